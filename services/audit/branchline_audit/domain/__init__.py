"""Pure audit domain: canonical entry bytes and the hash chain (:mod:`.canonical`), RFC 6962
Merkle trees and proofs (:mod:`.merkle`), the cached subtrees proofs are served from
(:mod:`.subtrees`), C2SP signed notes and checkpoints (:mod:`.note`), the ledger's own entries
and index columns (:mod:`.records`), what readers see of personal data (:mod:`.personal`),
retention (:mod:`.retention`), whole-ledger verification (:mod:`.verification`) and the
export format with its offline verifier (:mod:`.export`).

No I/O here: adapters store and serve what these modules compute.
"""
