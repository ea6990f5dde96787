"""Benchmark case (a): row sums, written as an Azure ML entry script."""

import json


def init():
    pass


def run(raw_data):
    rows = json.loads(raw_data)["data"]
    return [sum(row) for row in rows]
