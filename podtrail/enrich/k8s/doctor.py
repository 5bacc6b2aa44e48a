"""`podtrail doctor` checks for Kubernetes: API reachability and the RBAC permissions podtrail lacks."""

from __future__ import annotations

import os

from podtrail.config import KubernetesConfig
from podtrail.doctor import Check


def check_kubernetes(cfg: KubernetesConfig | None = None) -> Check:
    cfg = cfg or KubernetesConfig()
    try:
        from podtrail.enrich.k8s.api import API_CALLS, load_client

        api_client = load_client(cfg.kubeconfig)
    except Exception as e:  # noqa: BLE001
        logs = "present" if os.path.isdir(cfg.pod_logs_dir) else "absent"
        return Check("kubernetes", False, f"no API configured ({str(e).splitlines()[0][:80] if str(e) else type(e).__name__}); "
                     f"pod names from {cfg.pod_logs_dir} ({logs})", "run in-cluster or set kubernetes.kubeconfig")
    from kubernetes import client

    try:
        client.CoreV1Api(api_client).list_pod_for_all_namespaces(limit=1, _request_timeout=5)
    except Exception as e:  # noqa: BLE001
        return Check("kubernetes", False, f"API unreachable or refused: {str(e).splitlines()[0][:120]}",
                     "check the API address, network policy and RBAC (deploy/kubernetes)")
    lacking = []
    authz = client.AuthorizationV1Api(api_client)
    for group, resource, verb in API_CALLS:
        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(group=group, resource=resource, verb=verb)))
        try:
            status = authz.create_self_subject_access_review(review, _request_timeout=5).status
            if not (status is not None and status.allowed):
                lacking.append(f"{verb} {resource}")
        except Exception:  # noqa: BLE001 - the review API itself may be forbidden
            lacking.append(f"{verb} {resource} (unknown)")
    if lacking:
        return Check("kubernetes", False, "API reachable; RBAC lacks: " + ", ".join(lacking), "apply deploy/kubernetes RBAC")
    return Check("kubernetes", True, "API reachable; every permission podtrail uses is granted")
