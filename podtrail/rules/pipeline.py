"""pySigma processing pipelines built from a ``Target`` (works with pySigma 0.11 and 1.x).

Rules in the generic Sigma taxonomy (``product: linux``) are first renamed to podtrail's names
(``taxonomy_items``). Per category: the log-source conditions are added in the target's names,
then every field is renamed. A rule naming a field the target cannot see fails loudly at conversion, never
silently matches nothing.
"""

from __future__ import annotations

from typing import Any

from podtrail.model.fields import FIELDS, SIGMA_TAXONOMY, SIGMA_VALUES
from podtrail.rules.targets import CATEGORIES, PRODUCT, Target

GENERIC_PRODUCT = "linux"  # SigmaHQ's Linux rules, written in the generic taxonomy


def taxonomy_items(strict: bool = True) -> list[Any]:
    """Generic Sigma taxonomy -> podtrail's canonical names, for ``product: linux`` rules
    (podtrail.model.fields.SIGMA_TAXONOMY): values first (``Initiated: 'true'`` is
    ``direction: outbound``), then names. ``strict``: a field with no podtrail counterpart (or a
    keyword search) fails the conversion; the agent leaves that to its compiler, which says why."""
    from sigma.processing.conditions import ExcludeFieldCondition, IncludeFieldCondition, LogsourceCondition
    from sigma.processing.pipeline import ProcessingItem
    from sigma.processing.transformations import (
        DetectionItemFailureTransformation,
        FieldMappingTransformation,
        MapStringTransformation,
    )

    def linux() -> list[Any]:  # pySigma conditions belong to one item each
        return [LogsourceCondition(product=GENERIC_PRODUCT)]

    items = [ProcessingItem(identifier="podtrail_taxonomy_unknown_fields",
                            transformation=DetectionItemFailureTransformation(
                                "a field with no podtrail counterpart, or a keyword search (`podtrail rules check` says which)"),
                            rule_conditions=linux(),  # type: ignore[arg-type]
                            field_name_conditions=[ExcludeFieldCondition(fields=[*SIGMA_TAXONOMY, *FIELDS])])] if strict else []
    items += [ProcessingItem(identifier=f"podtrail_taxonomy_values_{name}",
                             transformation=MapStringTransformation(dict(values)),  # type: ignore[arg-type]
                             rule_conditions=linux(),  # type: ignore[arg-type]
                             field_name_conditions=[IncludeFieldCondition(fields=[name])])
              for name, values in SIGMA_VALUES.items()]
    items.append(ProcessingItem(identifier="podtrail_taxonomy_fields",
                                transformation=FieldMappingTransformation(dict(SIGMA_TAXONOMY)),  # type: ignore[arg-type]
                                rule_conditions=linux()))  # type: ignore[arg-type]
    return items


def taxonomy_pipeline() -> Any:
    """The agent's pipeline: the taxonomy only (it evaluates canonical names directly)."""
    from sigma.processing.pipeline import ProcessingPipeline

    return ProcessingPipeline(name="generic Sigma taxonomy to podtrail", priority=10, items=taxonomy_items(strict=False))


def build_pipeline(target: Target) -> Any:
    from sigma.processing.conditions import LogsourceCondition
    from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
    from sigma.processing.transformations import (
        AddConditionTransformation,
        FieldMappingTransformation,
        SetStateTransformation,
    )

    # Fields first (canonical -> target), then the log-source conditions, already in target
    # names, so the renaming never sees them.
    items = taxonomy_items()
    items += [ProcessingItem(identifier=f"podtrail_{target.name}_fields",
                             transformation=FieldMappingTransformation(dict(target.field_mapping())))]  # type: ignore[arg-type]
    items += [
        ProcessingItem(
            identifier=f"podtrail_{target.name}_{product}_{cat}",
            transformation=AddConditionTransformation(dict(target.category_conditions(cat))),  # type: ignore[arg-type]
            rule_conditions=[LogsourceCondition(product=product, category=cat)],
        )
        for product in (PRODUCT, GENERIC_PRODUCT) for cat in CATEGORIES
    ]
    items += [ProcessingItem(identifier=f"podtrail_{target.name}_state_{k}", transformation=SetStateTransformation(k, v))
              for k, v in target.state.items()]
    return ProcessingPipeline(name=f"podtrail to {target.name}", priority=20, items=items)
