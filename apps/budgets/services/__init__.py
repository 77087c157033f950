"""Writes of budgets: the ledger (reserve, settle, reconcile) and budget CRUD."""
