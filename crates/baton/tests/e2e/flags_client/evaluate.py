"""Evaluates one boolean flag through the OpenFeature Python SDK with the OFREP provider.

Usage: evaluate.py BASE_URL TOKEN FLAG KEY_PREFIX COUNT [ATTR=VALUE ...]
Prints a JSON list, one [value, reason, variant, error_code] per targeting key
KEY_PREFIX0 .. KEY_PREFIX{COUNT-1}; with COUNT 0, one evaluation without a targeting key.
"""

import json
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext


def main() -> None:
    base_url, token, flag, prefix, count = sys.argv[1:6]
    attributes = dict(a.split("=", 1) for a in sys.argv[6:])
    api.set_provider(
        OFREPProvider(base_url, headers_factory=lambda: {"Authorization": f"Bearer {token}"})
    )
    client = api.get_client()
    keys = [f"{prefix}{i}" for i in range(int(count))] or [None]
    out = []
    for key in keys:
        ctx = EvaluationContext(targeting_key=key, attributes=attributes)
        d = client.get_boolean_details(flag, False, ctx)
        code = d.error_code.value if d.error_code else None
        reason = d.reason.value if hasattr(d.reason, "value") else d.reason
        out.append([d.value, reason, d.variant, code])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
