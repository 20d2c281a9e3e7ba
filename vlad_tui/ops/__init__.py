"""UI-free async operations on a target (facts, pm2, backups, ...); no Textual imports here."""
