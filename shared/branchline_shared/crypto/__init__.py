"""Encryption of personal data (ADR-0007): per-client AES-256-GCM data keys
wrapped by a master key; destroying a client's key crypto-shreds their data everywhere."""
