"""Experiments written for the earlier mitosis (0.6) as its documentation shows them: steps that
return only "data", extra keys, data taken by *args, lookup tables that answer any name, and
logging through the standard logging module."""

from collections import defaultdict
from logging import getLogger

from mitosis._typing import ExpResults

logger = getLogger(__name__)

data_config = {"length": {"short": 3, "long": 5}}
meth_config = {"metric": {"len": "len", "zero": "zero"}}
# every parameter, every variant: None
anything = defaultdict(lambda: defaultdict(lambda: None))


class Doubled(dict):
    """A lookup table that knows every variant name: its value is the name twice."""

    def __missing__(self, key):
        return key * 2


doubled = {"word": Doubled(), "count": {"one": 1}}


def gen_data(length: int, extra: bool = False) -> ExpResults:
    logger.info("making %d points", length)
    logger.debug("debug detail")
    return {"data": [1.0] * length, "extra": extra, "note": {"kind": "ones"}}  # type: ignore


def fit_and_score(data, metric: str = "len") -> ExpResults:
    return {"main": len(data) if metric == "len" else 0, "metrics": {"n": len(data)}}


def do_nothing(*args, **kwargs) -> ExpResults:
    logger.info("got %d positional, keywords %s", len(args), sorted(kwargs))
    return {"main": len(args[0]) if args else None}


def take_word(word: str = "", count: int = 0) -> ExpResults:
    return {"main": len(word) * max(count, 1), "metrics": {"word": word}}


def only_data(length: int = 2) -> ExpResults:
    return {"data": [0.0] * length}  # type: ignore


def keyword_only(*, metric: str = "len") -> ExpResults:
    return {"main": metric}
