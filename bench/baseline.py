#!/usr/bin/env python3
"""The usual ways to load a PostgreSQL table for training, as the popular tutorials write them.

Run by the pipeline benchmark (bench/pipeline), one method per process so that each one's
peak memory is its own:

    python3 bench/baseline.py --dsn postgres://... --table bench_2000000 --method fetchall

Each method ends with the same arrays as pgtrain's preprocessing: the 16 numeric columns
standardised (StandardScaler's population standard deviation), the category one-hot
(pandas.get_dummies), the label, all float32. One JSON object goes to stdout.
"""

import argparse
import io
import json
import time

import numpy as np
import pandas as pd
import psycopg2

FEATURES = ["f%02d" % i for i in range(1, 17)]
COLUMNS = ["id"] + FEATURES + ["cat", "y"]


def to_arrays(df):
    num = df[FEATURES].astype(np.float32)
    num = (num - num.mean()) / num.std(ddof=0)
    dummies = pd.get_dummies(df["cat"], dtype=np.float32)
    x = np.hstack([num.to_numpy(np.float32), dummies.to_numpy(np.float32)])
    y = df["y"].to_numpy(np.float32)
    return x, y


def fetchall(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    rows = cur.fetchall()
    return pd.DataFrame(rows, columns=COLUMNS)


def cursor(conn, sql):
    # A named cursor is a server-side cursor: psycopg2 sends FETCH FORWARD 1024 per call.
    cur = conn.cursor(name="train_rows")
    cur.execute(sql)
    chunks = []
    while True:
        rows = cur.fetchmany(1024)
        if not rows:
            break
        chunks.append(pd.DataFrame(rows, columns=COLUMNS))
    return pd.concat(chunks, ignore_index=True)


def csv(conn, sql):
    buf = io.StringIO()
    conn.cursor().copy_expert("COPY (%s) TO STDOUT WITH CSV HEADER" % sql, buf)
    buf.seek(0)
    return pd.read_csv(buf)


METHODS = {"fetchall": fetchall, "cursor": cursor, "csv": csv}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--method", required=True, choices=sorted(METHODS))
    args = ap.parse_args()
    # Both names come from the harness, never from a user; they are quoted all the same.
    sql = "SELECT %s FROM \"%s\"" % (", ".join('"%s"' % c for c in COLUMNS), args.table.replace('"', '""'))

    start = time.perf_counter()
    conn = psycopg2.connect(args.dsn)
    df = METHODS[args.method](conn, sql)
    x, y = to_arrays(df)
    seconds = time.perf_counter() - start
    conn.close()
    print(json.dumps({
        "rows": int(x.shape[0]),
        "seconds": seconds,
        "width": int(x.shape[1]),
        "x_sum": float(x.sum(dtype=np.float64)),
        "y_sum": float(y.sum(dtype=np.float64)),
    }))


if __name__ == "__main__":
    main()
