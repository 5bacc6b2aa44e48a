"""Converts every shipped rule (or the rule files given as arguments) for QRadar and prints JSON;
run by the QRadar venv's python.

pysigma-backend-qradar-aql pins pySigma < 0.12 while the other backends need pySigma 1.x, so
it cannot share the main venv. ``make setup`` builds ``.venv-qradar`` from
``qradar-requirements.txt`` and ``podtrail rules build`` runs this module there. Only the
standard library, PyYAML and pySigma are imported, all present in that venv.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import yaml

    from podtrail.rules.catalog import RuleFile, rule_files
    from podtrail.rules.convert import to_qradar

    files = rule_files()
    if len(sys.argv) > 1:  # rule files given (any taxonomy): convert those instead of the shipped ones
        files = []
        for arg in sys.argv[1:]:
            doc = yaml.safe_load(Path(arg).read_text())
            files.append(RuleFile(Path(arg), str(doc.get("name") or doc.get("id")),
                                  "correlation" if "correlation" in doc else "alert", doc))
    out = [to_qradar(rf, files).__dict__ for rf in files if rf.kind != "base"]
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
