"""The long fuzzing run: mutated clips through `vir degrade` and generated values through the
parsers, in rounds, for as long as asked; prints and writes the counts (docs/robustness.md).

    python scripts/fuzz.py --minutes 60 --out fuzz-run.json --keep fuzz-failures/

Every input is counted by outcome (tests/fuzz/harness.py: same, changed, exit-N, FAIL-...); a
failing clip is kept in --keep for a regression test. The parsers' properties are in
tests/fuzz/parsers.py; a failing example is printed by hypothesis and counted as FAIL.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.fuzz import parsers  # noqa: E402
from tests.fuzz.harness import fuzz_clips  # noqa: E402


def fuzz_parser(name: str, examples: int, tally: Counter, failures: list) -> None:
    strategy, check = parsers.PARSERS[name]

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy())
    def run(value):
        tally[check(value)] += 1

    try:
        run()
    except Exception as e:  # noqa: BLE001 - a broken property: count it, keep the report going
        tally["FAIL"] += 1
        failures.append({"parser": name, "error": "".join(traceback.format_exception_only(e)).strip()[-800:]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--round-seconds", type=float, default=120.0, help="clip fuzzing per round")
    ap.add_argument("--examples", type=int, default=300, help="generated values per parser per round")
    ap.add_argument("--out", type=Path, default=Path("fuzz-run.json"))
    ap.add_argument("--keep", type=Path, default=None, help="folder for the inputs that fail")
    args = ap.parse_args()

    t0 = time.monotonic()
    end = t0 + 60 * args.minutes
    clips: dict[str, Counter] = {}
    clip_total: Counter = Counter()
    clip_failures: list = []
    parser_tallies = {name: Counter() for name in parsers.PARSERS}
    parser_failures: list = []
    rounds = 0
    with tempfile.TemporaryDirectory(prefix="vir-fuzz-") as work:
        while time.monotonic() < end:
            left = end - time.monotonic()
            tally = fuzz_clips(Path(work), seconds=min(args.round_seconds, max(1.0, left * 0.75)),
                               seed=args.seed + rounds, keep_failures=args.keep)
            clip_total.update(tally.outcomes)
            for clip, c in tally.by_clip.items():
                clips.setdefault(clip, Counter()).update(c)
            clip_failures += tally.failures
            for name in parsers.PARSERS:
                if time.monotonic() >= end:
                    break
                fuzz_parser(name, args.examples, parser_tallies[name], parser_failures)
            rounds += 1
            report = {"minutes": round((time.monotonic() - t0) / 60, 1), "rounds": rounds,
                      "clips": {"inputs": sum(clip_total.values()), "outcomes": dict(clip_total),
                                "by_clip": {k: dict(v) for k, v in sorted(clips.items())},
                                "failures": clip_failures},
                      "parsers": {k: dict(v) for k, v in parser_tallies.items()},
                      "parser_failures": parser_failures}
            args.out.write_text(json.dumps(report, indent=2) + "\n")
            print(f"[{report['minutes']:.1f} min] clips {report['clips']['inputs']}: {dict(clip_total)}; "
                  + "; ".join(f"{k} {sum(v.values())}" for k, v in parser_tallies.items()), flush=True)
    print(json.dumps({k: v for k, v in report.items() if "failures" not in k}, indent=2))
    bad = sum(v for k, v in clip_total.items() if k.startswith("FAIL")) + len(parser_failures)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
