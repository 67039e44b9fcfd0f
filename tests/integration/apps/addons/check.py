"""Add-on test app: talks to its add-ons as an app would, with redis-py and psycopg.

``python check.py``: a round trip to REDIS_URL and DATABASE_URL, each line saying what it got.
``python check.py steal DATABASE``: connect to the database named DATABASE with this app's
own credentials (as another tenant would), and say whether Postgres let it in.
"""

import os
import sys

import psycopg
import redis


def main() -> None:
    database_url = os.environ["DATABASE_URL"]
    if sys.argv[1:2] == ["steal"]:
        try:
            psycopg.connect(database_url, dbname=sys.argv[2], connect_timeout=10).close()
            print("stole", sys.argv[2], flush=True)
        except psycopg.Error as exc:
            print("refused:", str(exc).strip().splitlines()[-1], flush=True)
        return
    print("urls:", os.environ["REDIS_URL"].split("@")[1], database_url.split("@")[1], flush=True)
    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=10)
    client.set("greeting", os.environ["DYNO"])
    print("redis said:", client.get("greeting").decode(), flush=True)
    with psycopg.connect(database_url, sslmode="require", connect_timeout=10) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS seen (dyno text)")
        conn.execute("INSERT INTO seen VALUES (%s)", (os.environ["DYNO"],))
        count = conn.execute("SELECT count(*) FROM seen").fetchone()[0]
        ssl = conn.pgconn.ssl_in_use
        print(f"postgres said: {count} rows, ssl={ssl}", flush=True)


main()
