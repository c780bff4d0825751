"""portfleet's reports: read the store (never write it) and answer questions about it."""
