"""Pure audit domain: canonical entry bytes and the hash chain (:mod:`.canonical`), RFC 6962
Merkle trees and proofs (:mod:`.merkle`), C2SP signed notes and checkpoints (:mod:`.note`).

No I/O here: adapters store and serve what these modules compute.
"""
