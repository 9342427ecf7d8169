"""The web console's common parts: server-rendered pages (Jinja2), sessions with CSRF
protection, Chinese and English catalogues, dates in the branch's time zone, static assets
vendored from pinned packages. Each service mounts it and adds its own pages
(``docs/console.md``)."""
