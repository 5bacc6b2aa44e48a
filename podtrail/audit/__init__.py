"""auditd fallback: the same events from audit records (plugin, dispatcher socket or log)."""

from podtrail.audit.source import AuditSource, build_audit_source

__all__ = ["AuditSource", "build_audit_source"]
