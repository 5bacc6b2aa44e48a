"""SIEM content: the Sigma rules shipped in ``siem_content/sigma``, their conversion to each
SIEM's language with pySigma, and their evaluation on podtrail events (SQLite)."""
