"""`pool build MANIFEST [--out DIR]` and `pool info DIR`: materialise and inspect pools."""
from __future__ import annotations

import json

from causalmix.core.logs import common_options
from causalmix.datapool.pool import Pool


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="pool_action", metavar="ACTION", required=True)
    build = sub.add_parser("build", parents=[common_options()], help="materialise MANIFEST as Parquet shards with stable doc_ids")
    build.add_argument("manifest", help="pool manifest YAML (format: README.md, \"Using your own pool\")")
    build.add_argument("--out", default=None, help="output folder (default: the manifest's folder)")
    build.add_argument("--overwrite", action="store_true",
                       help="replace OUT/shards and OUT/dev even when OUT is not a built pool")
    info = sub.add_parser("info", parents=[common_options()], help="print a built pool's domains, shards and dev sets as JSON")
    info.add_argument("pool", help="built pool folder or its manifest")


def describe(pool: Pool) -> dict:
    return {
        "name": pool.name,
        "root": str(pool.root),
        "domains": {d: {"n_docs": pool.n_docs(d), "n_chars": pool.n_chars(d),
                        "n_shards": len(pool.shards(d))} for d in pool.domains},
        "dev": {d: {"metric": dev.metric, "n_docs": dev.n_docs} for d, dev in pool.dev_sets().items()},
    }


def run(args) -> int:
    if args.pool_action == "build":
        from causalmix.datapool.build import build_pool  # deferred: heavy import (pandas, pyarrow)

        out = build_pool(args.manifest, args.out, overwrite=args.overwrite)
        pool = Pool.open(out)
        print(json.dumps(describe(pool)))
        return 0
    print(json.dumps(describe(Pool.open(args.pool, build_if_needed=False)), indent=2))
    return 0
