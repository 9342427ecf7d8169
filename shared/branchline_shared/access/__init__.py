"""Who may speak for whom and who may read what (docs/access-control.md): pure rules over the
authenticated submitter, the declared actor and a client's owner, used by every service."""
