"""podtrail: container and Kubernetes context for kernel security events.

One normalized event model (``podtrail.model``) flows from every source (eBPF, auditd)
through enrichment (process table, container identity, Kubernetes) to every table and
formatter.
"""

__version__ = "0.1.0"
