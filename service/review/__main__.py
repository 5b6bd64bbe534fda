"""`python -m service.review`: the review UI as the container runs it (k8s/components/review).

The Bento image carries service/ and pipelines/runtime but not the pipelines CLI, so the pod starts
the UI here; `make review` (python -m pipelines review) is the same server for a laptop.
"""

from __future__ import annotations

import argparse

from service.review.app import serve
from service.review.settings import load_review_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service.review", description=__doc__)
    parser.add_argument("--host", help="default: feedback.host of params.yaml")
    parser.add_argument("--port", type=int, help="default: feedback.port of params.yaml")
    args = parser.parse_args(argv)
    serve(load_review_settings(), args.host, args.port)


if __name__ == "__main__":
    main()
