"""pySigma processing pipelines built from a ``Target`` (works with pySigma 0.11 and 1.x).

Per category: the log-source conditions are added in the target's names, then every field is
renamed. A rule naming a field the target cannot see fails loudly at conversion, never
silently matches nothing.
"""

from __future__ import annotations

from typing import Any

from podtrail.rules.targets import CATEGORIES, PRODUCT, Target


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
    items = [ProcessingItem(identifier=f"podtrail_{target.name}_fields",
                            transformation=FieldMappingTransformation(dict(target.field_mapping())))]  # type: ignore[arg-type]
    items += [
        ProcessingItem(
            identifier=f"podtrail_{target.name}_{cat}",
            transformation=AddConditionTransformation(dict(target.category_conditions(cat))),  # type: ignore[arg-type]
            rule_conditions=[LogsourceCondition(product=PRODUCT, category=cat)],
        )
        for cat in CATEGORIES
    ]
    items += [ProcessingItem(identifier=f"podtrail_{target.name}_state_{k}", transformation=SetStateTransformation(k, v))
              for k, v in target.state.items()]
    return ProcessingPipeline(name=f"podtrail to {target.name}", priority=20, items=items)
