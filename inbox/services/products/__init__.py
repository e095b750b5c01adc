"""Products: the catalogue, posts and their links, and which product a conversation is about.

Modules: `catalogue` (products, SKUs and keywords, CSV import, matching captions),
`posts` (posts seen in the inbox or loaded from the account, and their links),
`assignment` (a message's evidence decides a conversation's product; a choice made by
hand wins) and `panel` (the thread's "Why this product" panel and the CLI's story).
"""
