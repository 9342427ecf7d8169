"""Encryption of personal data (ARCHITECTURE.md decision 7): per-client AES-256-GCM data keys
wrapped by a master key; destroying a client's key crypto-shreds their data everywhere."""
