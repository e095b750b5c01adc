"""Products: the catalogue, the posts customers share and their links, and which product each
conversation is about.

Modules: `catalogue` (products, SKUs and keywords, CSV import, matching captions),
`posts` (posts seen in the inbox or loaded from the account, linked to products),
`assignment` (a message's evidence decides a conversation's product; a choice by hand
wins) and `panel` (the thread's "Why this product" panel and the CLI's story).
"""
