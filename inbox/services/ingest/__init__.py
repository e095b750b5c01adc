"""Applying parsed webhook events to the database, idempotently.

The rules:
- the business side is the account; the customer is the sender, or the recipient of an
  echo; a conversation's customer is never the account itself;
- one message per (account, mid), whatever the retries, replays and echoes;
- an echo confirms our send by mid, else claims one pending send with the same content,
  else is a message the owner typed in the Instagram app;
- follow-ups (profile fetch, media download, product evidence, live updates) are
  registered inside the transaction and run only after it commits.

Modules: `dispatch` (the entry point: which event goes where, in which transaction),
`messages` (the one path every new message row takes), `echoes` (our sends confirmed,
claimed and reconciled with the Send API's answer), `changes` (edits, unsends, reactions,
seen receipts, referrals) and `outcomes` (what applying an event did).
"""
