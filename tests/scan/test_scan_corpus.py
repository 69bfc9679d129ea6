"""A corpus of small programs, each with the exact findings the scanner must report.

Each entry is one or more files (``snippet.py`` when a string, dedented, so its line 1 is the
empty line after the opening quotes) and the expected findings as ``"RULE chain"`` strings
(see `Finding.chain_text`). Entries with no expected finding check
that offloaded or async-native code is not reported.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from asyncify_kit.scan import scan_paths


@dataclass(frozen=True)
class Snippet:
    id: str
    files: dict[str, str] | str
    expected: list[str]


S = "snippet.py"

CORPUS = [
    # -- HTTP ------------------------------------------------------------------------
    Snippet(
        "requests-direct",
        """
        import requests
        async def handler():
            return requests.get("https://example.com")
        """,
        [f"ASY101 {S}:4 handler -> requests.get"],
    ),
    Snippet(
        "requests-from-import",
        """
        from requests import post
        async def handler():
            post("https://example.com", json={})
        """,
        [f"ASY101 {S}:4 handler -> requests.post"],
    ),
    Snippet(
        "requests-session-local",
        """
        import requests
        async def handler():
            session = requests.Session()
            return session.get("https://example.com")
        """,
        [f"ASY101 {S}:5 handler -> requests.Session.get"],
    ),
    Snippet(
        "requests-session-with",
        """
        import requests
        async def handler():
            with requests.Session() as s:
                s.headers.update({"x": "1"})
                return s.request("GET", "https://example.com")
        """,
        [f"ASY101 {S}:6 handler -> requests.Session.request"],
    ),
    Snippet(
        "httpx-sync-function",
        """
        import httpx
        async def handler():
            return httpx.get("https://example.com")
        """,
        [f"ASY102 {S}:4 handler -> httpx.get"],
    ),
    Snippet(
        "httpx-client",
        """
        import httpx
        async def handler():
            with httpx.Client(base_url="https://example.com") as client:
                return client.post("/items")
        """,
        [f"ASY102 {S}:5 handler -> httpx.Client.post"],
    ),
    Snippet(
        "httpx-async-client-is-fine",
        """
        import httpx
        async def handler():
            async with httpx.AsyncClient() as client:
                return await client.get("https://example.com")
        """,
        [],
    ),
    Snippet(
        "urllib-urlopen",
        """
        from urllib.request import urlopen
        async def handler():
            return urlopen("https://example.com").read()
        """,
        [f"ASY103 {S}:4 handler -> urllib.request.urlopen"],
    ),
    Snippet(
        "urllib3-poolmanager",
        """
        import urllib3
        http = urllib3.PoolManager()
        async def handler():
            return http.request("GET", "https://example.com")
        """,
        [f"ASY103 {S}:5 handler -> urllib3.PoolManager.request"],
    ),
    Snippet(
        "http-client-connection",
        """
        import http.client
        async def handler():
            conn = http.client.HTTPSConnection("example.com")
            conn.request("GET", "/")
            return conn.getresponse()
        """,
        [
            f"ASY103 {S}:5 handler -> http.client.HTTPConnection.request",
            f"ASY103 {S}:6 handler -> http.client.HTTPConnection.getresponse",
        ],
    ),
    # -- AWS -------------------------------------------------------------------------
    Snippet(
        "boto3-client",
        """
        import boto3
        s3 = boto3.client("s3")
        async def handler(key):
            return s3.get_object(Bucket="b", Key=key)
        """,
        [f"ASY104 {S}:5 handler -> boto3.client.get_object"],
    ),
    Snippet(
        "boto3-session-client",
        """
        import boto3
        async def handler():
            return boto3.Session(profile_name="x").client("sqs").list_queues()
        """,
        [f"ASY104 {S}:4 handler -> boto3.client.list_queues"],
    ),
    Snippet(
        "boto3-resource",
        """
        import boto3
        async def handler(path):
            bucket = boto3.resource("s3").Bucket("media")
            bucket.upload_file(path, "key")
        """,
        [f"ASY104 {S}:5 handler -> boto3.resource.upload_file"],
    ),
    Snippet(
        "boto3-paginator",
        """
        import boto3
        async def handler():
            client = boto3.client("s3")
            pages = client.get_paginator("list_objects_v2").paginate(Bucket="b")
            url = client.generate_presigned_url("get_object", Params={})
            return pages, url
        """,
        [f"ASY104 {S}:5 handler -> boto3.Paginator.paginate"],
    ),
    Snippet(
        "boto3-annotated-client",
        """
        from mypy_boto3_s3 import S3Client
        def remove(client: S3Client, key: str) -> None:
            client.delete_object(Bucket="b", Key=key)
        async def handler(client: S3Client):
            remove(client, "k")
        """,
        [f"ASY104 {S}:6 handler -> {S}:4 remove -> boto3.client.delete_object"],
    ),
    # -- files -----------------------------------------------------------------------
    Snippet(
        "open-and-io-open",
        """
        import io
        async def handler(path):
            with open(path, "rb") as fh:
                first = fh.read()
            with io.open(path) as fh:
                return first, fh.read()
        """,
        [f"ASY105 {S}:4 handler -> builtins.open", f"ASY105 {S}:6 handler -> io.open"],
    ),
    Snippet(
        "pathlib-read-text",
        """
        from pathlib import Path
        async def handler():
            return Path("config.toml").read_text()
        """,
        [f"ASY106 {S}:4 handler -> pathlib.Path.read_text"],
    ),
    Snippet(
        "pathlib-division",
        """
        import pathlib
        async def handler(base, data):
            (pathlib.Path(base) / "out" / "a.bin").write_bytes(data)
        """,
        [f"ASY106 {S}:4 handler -> pathlib.Path.write_bytes"],
    ),
    Snippet(
        "pathlib-annotated-parameter",
        """
        from pathlib import Path
        async def handler(path: Path | None = None):
            return path.exists()
        """,
        [f"ASY106 {S}:4 handler -> pathlib.Path.exists"],
    ),
    Snippet(
        "pathlib-parent-joinpath",
        """
        from pathlib import Path
        HERE = Path(__file__).parent
        async def handler():
            return HERE.joinpath("static", "index.html").read_bytes()
        """,
        [f"ASY106 {S}:5 handler -> pathlib.Path.read_bytes"],
    ),
    Snippet(
        "os-file-calls",
        """
        import os
        import os.path
        async def handler(path):
            if os.path.exists(path):
                return os.listdir(path)
        """,
        [f"ASY107 {S}:5 handler -> os.path.exists", f"ASY107 {S}:6 handler -> os.listdir"],
    ),
    Snippet(
        "shutil-rmtree",
        """
        import shutil
        async def handler(path):
            shutil.rmtree(path, ignore_errors=True)
        """,
        [f"ASY107 {S}:4 handler -> shutil.rmtree"],
    ),
    # -- databases -------------------------------------------------------------------
    Snippet(
        "psycopg2",
        """
        import psycopg2
        async def handler(dsn):
            conn = psycopg2.connect(dsn)
            cur = conn.cursor()
            cur.execute("select 1")
            return cur.fetchall()
        """,
        [
            f"ASY108 {S}:4 handler -> psycopg2.connect",
            f"ASY108 {S}:6 handler -> psycopg2.cursor.execute",
            f"ASY108 {S}:7 handler -> psycopg2.cursor.fetchall",
        ],
    ),
    Snippet(
        "psycopg3-sync",
        """
        import psycopg
        async def handler(dsn):
            with psycopg.connect(dsn) as conn:
                return conn.execute("select 1").fetchone()
        """,
        [
            f"ASY108 {S}:4 handler -> psycopg.connect",
            f"ASY108 {S}:5 handler -> psycopg.Connection.execute",
            f"ASY108 {S}:5 handler -> psycopg.Cursor.fetchone",
        ],
    ),
    Snippet(
        "psycopg3-async-is-fine",
        """
        import psycopg
        async def handler(dsn):
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                return await (await conn.execute("select 1")).fetchone()
        """,
        [],
    ),
    Snippet(
        "pymysql",
        """
        import pymysql
        async def handler():
            conn = pymysql.connect(host="127.0.0.1")
            with conn.cursor() as cur:
                cur.execute("select 1")
            conn.commit()
        """,
        [
            f"ASY109 {S}:4 handler -> pymysql.connect",
            f"ASY109 {S}:6 handler -> pymysql.Cursor.execute",
            f"ASY109 {S}:7 handler -> pymysql.Connection.commit",
        ],
    ),
    Snippet(
        "mysqlclient",
        """
        import MySQLdb
        async def handler():
            return MySQLdb.connect(host="127.0.0.1").cursor().fetchone()
        """,
        [
            f"ASY109 {S}:4 handler -> MySQLdb.Cursor.fetchone",
            f"ASY109 {S}:4 handler -> MySQLdb.connect",
        ],
    ),
    Snippet(
        "sqlite3-annotated-optional",
        """
        import sqlite3
        from typing import Optional
        def save(conn: Optional[sqlite3.Connection]) -> None:
            conn.commit()
        async def handler(conn):
            save(conn)
        """,
        [f"ASY110 {S}:7 handler -> {S}:5 save -> sqlite3.Connection.commit"],
    ),
    # -- sleeping, subprocesses, sockets ---------------------------------------------
    Snippet(
        "time-sleep-from-import",
        """
        from time import sleep
        async def handler():
            sleep(0.1)
        """,
        [f"ASY111 {S}:4 handler -> time.sleep"],
    ),
    Snippet(
        "asyncio-sleep-is-fine",
        """
        import asyncio
        import anyio
        async def handler():
            await asyncio.sleep(0.1)
            await anyio.sleep(0.1)
        """,
        [],
    ),
    Snippet(
        "subprocess-popen",
        """
        import subprocess
        async def handler():
            proc = subprocess.Popen(["ls"], stdout=subprocess.PIPE)
            return proc.communicate()
        """,
        [
            f"ASY112 {S}:4 handler -> subprocess.Popen",
            f"ASY112 {S}:5 handler -> subprocess.Popen.communicate",
        ],
    ),
    Snippet(
        "os-system",
        """
        import os
        async def handler():
            return os.system("true")
        """,
        [f"ASY112 {S}:4 handler -> os.system"],
    ),
    Snippet(
        "socket-client",
        """
        import socket
        async def handler(host):
            sock = socket.create_connection((host, 80))
            sock.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            return sock.recv(1024)
        """,
        [
            f"ASY113 {S}:4 handler -> socket.create_connection",
            f"ASY113 {S}:5 handler -> socket.socket.sendall",
            f"ASY113 {S}:6 handler -> socket.socket.recv",
        ],
    ),
    Snippet(
        "thread-waits",
        """
        import asyncio, concurrent.futures, queue, threading
        from threading import Event
        class Worker:
            def __init__(self):
                self.ready = Event()
                self.pool = concurrent.futures.ThreadPoolExecutor()
            async def handler(self, loop):
                self.ready.wait()
                self.pool.submit(print).result()
                asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result()
                q = queue.SimpleQueue()
                q.put(1)
                q.get()
                threading.Thread(target=print).join()
                name = input()
                self.ready.is_set()
                q.get_nowait()
                await asyncio.wrap_future(self.pool.submit(print))
        """,
        [
            f"ASY114 {S}:9 Worker.handler -> threading.Event.wait",
            f"ASY114 {S}:10 Worker.handler -> concurrent.futures.Future.result",
            f"ASY114 {S}:11 Worker.handler -> concurrent.futures.Future.result",
            f"ASY114 {S}:14 Worker.handler -> queue.Queue.get",
            f"ASY114 {S}:15 Worker.handler -> threading.Thread.join",
            f"ASY114 {S}:16 Worker.handler -> builtins.input",
        ],
    ),
    Snippet(
        "thread-locks-in-with",  # `with lock:` acquires it, as lock.acquire() does
        """
        import asyncio, threading
        LOCK = threading.Lock()
        class Worker:
            def __init__(self):
                self.guard = threading.RLock()
                self.slots = threading.BoundedSemaphore(2)
            async def handler(self):
                with LOCK:
                    pass
                with self.guard, self.slots:
                    pass
                async with asyncio.Lock():
                    pass
                with open("x") as f:
                    pass
        """,
        [
            f"ASY114 {S}:9 Worker.handler -> threading.Lock.__enter__",
            f"ASY114 {S}:11 Worker.handler -> threading.RLock.__enter__",
            f"ASY114 {S}:11 Worker.handler -> threading.Semaphore.__enter__",
            f"ASY105 {S}:15 Worker.handler -> builtins.open",
        ],
    ),
    Snippet(
        # the end of an executor's `with` waits for its work (shutdown(wait=True)), as do
        # as_completed() and Executor.map() as they are consumed
        "thread-pool-fan-out",
        """
        import concurrent.futures as cf
        from concurrent.futures import ThreadPoolExecutor, as_completed
        def work(x):
            return x
        async def fan_out(xs):
            with ThreadPoolExecutor(max_workers=8) as ex:
                futures = [ex.submit(work, x) for x in xs]
                for _ in as_completed(futures):
                    pass
        async def fan_out_map(xs):
            with cf.ProcessPoolExecutor() as ex:
                return list(ex.map(work, xs))
        def submit_all(xs):
            with ThreadPoolExecutor() as ex:
                for x in xs:
                    ex.submit(work, x)
        async def via_helper(xs):
            submit_all(xs)
        """,
        [
            f"ASY114 {S}:7 fan_out -> concurrent.futures.Executor.__exit__",
            f"ASY114 {S}:9 fan_out -> concurrent.futures.as_completed",
            f"ASY114 {S}:12 fan_out_map -> concurrent.futures.Executor.__exit__",
            f"ASY114 {S}:13 fan_out_map -> concurrent.futures.Executor.map",
            f"ASY114 {S}:19 via_helper -> {S}:15 submit_all -> "
            "concurrent.futures.Executor.__exit__",
        ],
    ),
    Snippet(
        # work handed to the loop is awaited: the pool is only created, or its `with` block
        # awaits, so nothing is left to wait for at its end
        "thread-pool-awaited",
        """
        import asyncio
        from concurrent.futures import ThreadPoolExecutor
        POOL = ThreadPoolExecutor()
        def work(x):
            return x
        async def created(xs):
            loop = asyncio.get_running_loop()
            ex = ThreadPoolExecutor()
            await loop.run_in_executor(ex, work, 1)
            await asyncio.wrap_future(ex.submit(work, 2))
            await loop.run_in_executor(POOL, work, 3)
        async def in_with(xs):
            loop = asyncio.get_running_loop()
            with ThreadPoolExecutor() as ex:
                await asyncio.gather(*(loop.run_in_executor(ex, work, x) for x in xs))
            with ThreadPoolExecutor() as ex:
                futures = [asyncio.wrap_future(ex.submit(work, x)) for x in xs]
                async for _ in aiter_of(futures):
                    pass
        async def aiter_of(futures):
            for future in futures:
                yield await future
        """,
        [],
    ),
    Snippet(
        "sqlalchemy-sync",
        """
        from sqlalchemy import create_engine, select, text
        from sqlalchemy.ext.asyncio import AsyncSession
        from sqlalchemy.orm import Session, sessionmaker
        engine = create_engine("sqlite://")
        SessionLocal = sessionmaker(bind=engine)
        async def users(db: Session):
            return db.query(object).filter(True).all()
        async def raw():
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            db = SessionLocal()
            db.commit()
        async def native(session: AsyncSession):
            return await session.execute(select(1))
        """,
        [
            f"ASY115 {S}:8 users -> sqlalchemy.orm.Query.all",
            f"ASY115 {S}:10 raw -> sqlalchemy.Engine.connect",
            f"ASY115 {S}:11 raw -> sqlalchemy.Connection.execute",
            f"ASY115 {S}:13 raw -> sqlalchemy.orm.Session.commit",
        ],
    ),
    Snippet(
        "redis-sync",
        """
        import redis
        from redis import asyncio as aioredis
        cache = redis.Redis.from_url("redis://localhost")
        native = aioredis.Redis()
        async def handler():
            cache.set("k", 1)
            pipe = cache.pipeline()
            pipe.incr("n")
            pipe.execute()
            return await native.get("k")
        """,
        [
            f"ASY116 {S}:7 handler -> redis.Redis.set",
            f"ASY116 {S}:10 handler -> redis.Pipeline.execute",
        ],
    ),
    Snippet(
        "password-hash",
        """
        import hashlib
        import bcrypt
        from argon2 import PasswordHasher
        from passlib.context import CryptContext
        from passlib.hash import pbkdf2_sha256
        context = CryptContext(schemes=["bcrypt"])
        async def login(password: bytes, stored: bytes):
            bcrypt.checkpw(password, stored)
            context.verify(password, stored)
            PasswordHasher().verify(stored, password)
            pbkdf2_sha256.hash(password)
            hashlib.pbkdf2_hmac("sha256", password, b"salt", 600_000)
            return hashlib.sha256(password).digest()
        """,
        [
            f"ASY117 {S}:9 login -> bcrypt.checkpw",
            f"ASY117 {S}:10 login -> passlib.CryptContext.verify",
            f"ASY117 {S}:11 login -> argon2.PasswordHasher.verify",
            f"ASY117 {S}:12 login -> passlib.hash.pbkdf2_sha256.hash",
            f"ASY117 {S}:13 login -> hashlib.pbkdf2_hmac",
        ],
    ),
    Snippet(
        "smtp",
        """
        import smtplib
        async def send(message):
            with smtplib.SMTP_SSL("mail.example.org") as server:
                server.login("user", "password")
                server.send_message(message)
        """,
        [
            f"ASY118 {S}:4 send -> smtplib.SMTP_SSL",
            f"ASY118 {S}:5 send -> smtplib.SMTP.login",
            f"ASY118 {S}:6 send -> smtplib.SMTP.send_message",
        ],
    ),
    Snippet(
        "tempfile-and-pandas",
        """
        import io
        import tempfile
        import pandas as pd
        async def export(data: bytes):
            frame = pd.read_csv("prices.csv")
            with tempfile.NamedTemporaryFile() as tmp:
                tmp.write(data)
            work = tempfile.mkdtemp()
            spooled = tempfile.SpooledTemporaryFile(max_size=1024)
            return frame, work, spooled, pd.read_csv(io.StringIO("a,b"))
        """,
        [
            f"ASY105 {S}:6 export -> pandas.read_csv",
            f"ASY105 {S}:7 export -> tempfile.NamedTemporaryFile",
            f"ASY107 {S}:9 export -> tempfile.mkdtemp",
            f"ASY105 {S}:11 export -> pandas.read_csv",
        ],
    ),
    Snippet(
        "mongodb-sync",
        """
        from fastapi import Depends
        from motor.motor_asyncio import AsyncIOMotorClient
        from pymongo import MongoClient
        client = MongoClient("mongodb://localhost")
        db = client["shop"]
        native = AsyncIOMotorClient()
        def get_db():
            return client.get_database("shop")
        async def handler(shop=Depends(get_db)):
            user = db.users.find_one({"_id": 1})
            client.shop["orders"].insert_one({"user": user})
            shop.orders.count_documents({})
            docs = list(db.users.find({}).sort("name").limit(10))
            names = client.list_database_names()
            return await native.shop.users.find_one({}), docs, names
        """,
        [
            f"ASY119 {S}:11 handler -> pymongo.MongoClient.find_one",
            f"ASY119 {S}:12 handler -> pymongo.MongoClient.insert_one",
            f"ASY119 {S}:13 handler -> pymongo.MongoClient.count_documents",
            f"ASY119 {S}:14 handler -> pymongo.MongoClient.find",
            f"ASY119 {S}:15 handler -> pymongo.MongoClient.list_database_names",
        ],
    ),
    Snippet(
        "cloud-sdk-sync",
        """
        from azure.storage.blob import BlobServiceClient
        from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient
        from elasticsearch import AsyncElasticsearch, Elasticsearch
        from google.cloud import storage
        gcs = storage.Client()
        blobs = BlobServiceClient.from_connection_string("conn")
        es = Elasticsearch("http://localhost:9200")
        native_es = AsyncElasticsearch("http://localhost:9200")
        native_blobs = AsyncBlobServiceClient.from_connection_string("conn")
        async def upload(data: bytes):
            blob = gcs.bucket("media").blob("a.txt")
            blob.upload_from_string(data)
            container = blobs.get_container_client("media")
            container.get_blob_client("a.txt").upload_blob(data)
            es.options(request_timeout=5).index(index="docs", document={"a": 1})
            es.indices.refresh(index="docs")
            await native_es.search(index="docs")
            return await native_blobs.get_blob_client("media", "a").download_blob()
        """,
        [
            f"ASY121 {S}:13 upload -> google.cloud.storage.Client.upload_from_string",
            f"ASY121 {S}:15 upload -> azure.storage.blob.BlobServiceClient.upload_blob",
            f"ASY121 {S}:16 upload -> elasticsearch.Elasticsearch.index",
            f"ASY121 {S}:17 upload -> elasticsearch.Elasticsearch.refresh",
        ],
    ),
    Snippet(
        "fastapi-depends-without-annotation",
        """
        import requests
        from fastapi import Depends
        from sqlalchemy.orm import sessionmaker
        SessionLocal = sessionmaker()
        def get_db():
            db = SessionLocal()
            try:
                yield db
            finally:
                db.close()
        class Weather:
            def today(self):
                return requests.get("https://example.com/today").json()
        async def get_native():
            yield None
        async def handler(db=Depends(get_db), weather=Depends(Weather), other=Depends(get_native)):
            db.commit()
            return weather.today(), other
        async def fallback(session=requests.Session(), timeout=5):
            return session.get("https://example.com", timeout=timeout)
        """,
        [
            f"ASY115 {S}:18 handler -> sqlalchemy.orm.Session.commit",
            f"ASY101 {S}:19 handler -> {S}:14 Weather.today -> requests.get",
            f"ASY101 {S}:21 fallback -> requests.Session.get",
        ],
    ),
    Snippet(
        "sqlmodel-annotated-alias",
        """
        from typing import Annotated, Optional
        from fastapi import Depends
        from sqlmodel import Session, create_engine, select
        from typing_extensions import TypeAlias
        engine = create_engine("sqlite://")
        def get_session():
            with Session(engine) as session:
                yield session
        SessionDep = Annotated[Session, Depends(get_session)]
        MaybeSession: TypeAlias = Optional[Session]
        async def read_heroes(session: SessionDep, other: MaybeSession = None):
            if other is not None:
                other.commit()
            return session.exec(select(1)).all()
        """,
        [
            f"ASY115 {S}:14 read_heroes -> sqlalchemy.orm.Session.commit",
            f"ASY115 {S}:15 read_heroes -> sqlalchemy.orm.Session.exec",
        ],
    ),
    Snippet(
        "ai-sdk-sync",
        """
        import anthropic
        import openai
        from openai import AsyncOpenAI, OpenAI
        client = OpenAI()
        claude = anthropic.Anthropic()
        native = AsyncOpenAI()
        async def chat(prompt: str):
            fast = client.with_options(timeout=5)
            answer = fast.chat.completions.create(model="m", messages=[])
            client.embeddings.create(model="e", input=prompt)
            openai.chat.completions.create(model="m", messages=[])
            claude.messages.create(model="c", max_tokens=10, messages=[])
            with claude.messages.stream(model="c", max_tokens=10, messages=[]) as stream:
                stream.until_done()
            client.close()
            return answer, await native.chat.completions.create(model="m", messages=[])
        """,
        [
            f"ASY120 {S}:10 chat -> openai.OpenAI.create",
            f"ASY120 {S}:11 chat -> openai.OpenAI.create",
            f"ASY120 {S}:12 chat -> openai.OpenAI.create",
            f"ASY120 {S}:13 chat -> anthropic.Anthropic.create",
            f"ASY120 {S}:14 chat -> anthropic.Anthropic.stream",
        ],
    ),
    Snippet(
        "non-blocking-socket",
        """
        import socket
        async def handler(sock: socket.socket):
            sock.setblocking(False)
            try:
                data = sock.recv(1024)
            except (BlockingIOError, InterruptedError):
                data = b""
            sock.sendall(data)
        """,
        [f"ASY113 {S}:9 handler -> socket.socket.sendall"],
    ),
    Snippet(
        "socket-dns",
        """
        import socket
        async def handler(host):
            return socket.getaddrinfo(host, 443)
        """,
        [f"ASY113 {S}:4 handler -> socket.getaddrinfo"],
    ),
    Snippet(
        "asyncio-streams-are-fine",
        """
        import asyncio
        async def handler(host):
            reader, writer = await asyncio.open_connection(host, 80)
            writer.write(b"ping")
            await writer.drain()
            return await reader.read(100)
        """,
        [],
    ),
    # -- scopes and the call graph ---------------------------------------------------
    Snippet(
        "nested-function-called",
        """
        import time
        async def handler():
            def inner():
                time.sleep(1)
            inner()
        """,
        [f"ASY111 {S}:6 handler -> {S}:5 handler.<locals>.inner -> time.sleep"],
    ),
    Snippet(
        "nested-function-and-lambda-not-called",
        """
        import time
        async def handler():
            def inner():
                time.sleep(1)
            later = lambda: time.sleep(1)
            return inner, later
        """,
        [],
    ),
    Snippet(
        "mutual-recursion",
        """
        import time
        def ping(n):
            if n:
                pong(n - 1)
        def pong(n):
            time.sleep(0.1)
            ping(n)
        async def handler():
            ping(3)
        """,
        [f"ASY111 {S}:10 handler -> {S}:5 ping -> {S}:7 pong -> time.sleep"],
    ),
    Snippet(
        "async-callee-reported-once",
        """
        import time
        async def inner():
            time.sleep(1)
        async def outer():
            await inner()
        """,
        [f"ASY111 {S}:4 inner -> time.sleep"],
    ),
    Snippet(
        "dunder-call",
        """
        import time
        class Throttle:
            def __call__(self):
                time.sleep(0.5)
        throttle = Throttle()
        async def handler():
            throttle()
        """,
        [f"ASY111 {S}:8 handler -> {S}:5 Throttle.__call__ -> time.sleep"],
    ),
    Snippet(
        "constructor-connects",
        """
        import sqlite3
        class Repo:
            def __init__(self, path):
                self.conn = sqlite3.connect(path)
        async def handler():
            return Repo("app.db")
        """,
        [f"ASY110 {S}:7 handler -> {S}:5 Repo.__init__ -> sqlite3.connect"],
    ),
    Snippet(
        "inherited-method",
        """
        import time
        class Base:
            def wait(self):
                time.sleep(1)
        class Child(Base):
            def run(self):
                self.wait()
        async def handler():
            Child().run()
        """,
        [f"ASY111 {S}:10 handler -> {S}:8 Child.run -> {S}:5 Base.wait -> time.sleep"],
    ),
    Snippet(
        "subclass-of-requests-session",
        """
        import requests
        class Api(requests.Session):
            def users(self):
                return self.get("https://example.com/users")
        async def handler():
            return Api().users()
        """,
        [f"ASY101 {S}:7 handler -> {S}:5 Api.users -> requests.Session.get"],
    ),
    Snippet(
        "super-calls",
        """
        import requests
        import sqlite3
        class Base:
            def __init__(self):
                self.conn = sqlite3.connect("app.db")
        class Repo(Base):
            def __init__(self):
                super().__init__()
        class Api(requests.Session):
            def get(self, url, **kwargs):
                return super().get(url, timeout=5, **kwargs)
        async def handler():
            Repo()
            return Api().get("https://example.com")
        """,
        [
            f"ASY110 {S}:14 handler -> {S}:9 Repo.__init__ -> {S}:6 Base.__init__ -> "
            "sqlite3.connect",
            f"ASY101 {S}:15 handler -> {S}:12 Api.get -> requests.Session.get",
        ],
    ),
    Snippet(
        "property-with-setter",
        """
        from pathlib import Path
        class Settings:
            @property
            def raw(self):
                return Path("settings.toml").read_text()
            @raw.setter
            def raw(self, value):
                Path("settings.toml").write_text(value)
        settings = Settings()
        async def handler():
            return settings.raw
        """,
        [f"ASY106 {S}:12 handler -> {S}:6 Settings.raw -> pathlib.Path.read_text"],
    ),
    Snippet(
        "return-value-inference",
        """
        import requests
        def make_session():
            return requests.Session()
        async def handler():
            return make_session().get("https://example.com")
        """,
        [f"ASY101 {S}:6 handler -> requests.Session.get"],
    ),
    Snippet(
        "return-annotation-string",
        """
        import httpx
        def client() -> "httpx.Client":
            ...
        async def handler():
            return client().delete("https://example.com/x")
        """,
        [f"ASY102 {S}:6 handler -> httpx.Client.delete"],
    ),
    Snippet(
        "instance-attribute-from-annotated-parameter",
        """
        import requests
        class Gateway:
            def __init__(self, session: requests.Session) -> None:
                self.session = session
            def charge(self):
                return self.session.post("https://pay.example.com")
        async def handler(gateway: Gateway):
            return gateway.charge()
        """,
        [f"ASY101 {S}:9 handler -> {S}:7 Gateway.charge -> requests.Session.post"],
    ),
    Snippet(
        "comprehension",
        """
        import requests
        async def handler(urls):
            return [requests.get(u) for u in urls]
        """,
        [f"ASY101 {S}:4 handler -> requests.get"],
    ),
    Snippet(
        "star-import",
        """
        from time import *
        async def handler():
            sleep(1)
        """,
        [f"ASY111 {S}:4 handler -> time.sleep"],
    ),
    Snippet(
        "module-level-alias",
        """
        import requests
        fetch = requests.get
        async def handler():
            return fetch("https://example.com")
        """,
        [f"ASY101 {S}:5 handler -> requests.get"],
    ),
    Snippet(
        "optional-import",
        """
        try:
            import requests
        except ImportError:
            requests = None
        async def handler():
            if requests is not None:
                return requests.get("https://example.com")
        """,
        [f"ASY101 {S}:8 handler -> requests.get"],
    ),
    Snippet(
        "walrus",
        """
        import requests
        async def handler():
            if (session := requests.Session()) is not None:
                return session.get("https://example.com")
        """,
        [f"ASY101 {S}:5 handler -> requests.Session.get"],
    ),
    Snippet(
        "shadowed-name-is-not-the-module",
        """
        class Clock:
            def sleep(self, seconds):
                return seconds
        async def handler():
            time = Clock()
            time.sleep(1)
        """,
        [],
    ),
    Snippet(
        "lru-cache-decorated-helper",
        """
        import functools
        import pathlib
        @functools.lru_cache
        def settings():
            return pathlib.Path("settings.json").read_text()
        async def handler():
            return settings()
        """,
        [f"ASY106 {S}:8 handler -> {S}:6 settings -> pathlib.Path.read_text"],
    ),
    Snippet(
        "generator-helper",
        """
        import sqlite3
        def rows(conn: sqlite3.Connection):
            yield from conn.execute("select * from t")
        async def handler(conn):
            return [row for row in rows(conn)]
        """,
        [f"ASY110 {S}:6 handler -> {S}:4 rows -> sqlite3.Connection.execute"],
    ),
    Snippet(
        "contextmanager-helper",
        """
        from contextlib import contextmanager
        import psycopg2
        @contextmanager
        def transaction(dsn):
            conn = psycopg2.connect(dsn)
            yield conn
            conn.commit()
        async def handler(dsn):
            with transaction(dsn) as conn:
                return conn
        """,
        [
            f"ASY108 {S}:10 handler -> {S}:6 transaction -> psycopg2.connect",
            f"ASY108 {S}:10 handler -> {S}:8 transaction -> psycopg2.connection.commit",
        ],
    ),
    Snippet(
        "relative-import-in-package",
        {
            "pkg/__init__.py": "from .helpers import slow as slow\n",
            "pkg/helpers.py": "import time\ndef slow():\n    time.sleep(1)\n",
            "pkg/views.py": "from . import slow\nasync def view():\n    slow()\n",
        },
        ["ASY111 pkg/views.py:3 view -> pkg/helpers.py:3 slow -> time.sleep"],
    ),
    Snippet(
        "import-cycle-between-modules",
        {
            "a.py": "import time\nfrom b import later\ndef now():\n    time.sleep(1)\n",
            "b.py": "from a import now\ndef later():\n    now()\nasync def run():\n    later()\n",
        },
        ["ASY111 b.py:5 run -> b.py:3 later -> a.py:4 now -> time.sleep"],
    ),
    Snippet(
        "class-level-none-default-then-instance-attribute",
        """
        import psycopg2
        import requests
        class Repo:
            conn = None
            def connect(self):
                self.conn = psycopg2.connect("dbname=app")
            def save(self):
                self.conn.commit()
        class Api:
            session = None
            def __init__(self):
                self.session = requests.Session()
            def get(self, path):
                return self.session.get(path)
        async def handler(repo: Repo):
            repo.save()
            return Api().get("/users")
        """,
        [
            f"ASY108 {S}:17 handler -> {S}:9 Repo.save -> psycopg2.connection.commit",
            f"ASY101 {S}:18 handler -> {S}:15 Api.get -> requests.Session.get",
        ],
    ),
    Snippet(
        "class-level-none-default-then-instance-attribute-in-base-class",
        """
        import sqlite3
        class Base:
            def __init__(self):
                self.conn = sqlite3.connect("app.db")
        class Repo(Base):
            conn = None
            def count(self):
                return self.conn.execute("select 1")
        async def handler():
            return Repo().count()
        """,
        [
            f"ASY110 {S}:11 handler -> {S}:5 Base.__init__ -> sqlite3.connect",
            f"ASY110 {S}:11 handler -> {S}:9 Repo.count -> sqlite3.Connection.execute",
        ],
    ),
    Snippet(
        "external-class-with-rules-called-directly",
        """
        import sqlite3
        conn = sqlite3.Connection("app.db")
        async def handler():
            return conn.execute("select 1")
        """,
        [f"ASY110 {S}:5 handler -> sqlite3.Connection.execute"],
    ),
    Snippet(
        "lambda-assigned-then-called",
        """
        import requests
        async def handler(url):
            fetch = lambda: requests.get(url)
            return fetch()
        """,
        [f"ASY101 {S}:5 handler -> {S}:4 handler.<locals>.<lambda> -> requests.get"],
    ),
    Snippet(
        "lambda-called-immediately",
        """
        import time
        async def handler():
            return (lambda: time.sleep(1))()
        """,
        [f"ASY111 {S}:4 handler -> {S}:4 handler.<locals>.<lambda> -> time.sleep"],
    ),
    Snippet(
        "lambda-at-module-level-called",
        """
        import pathlib
        load = lambda name: pathlib.Path(name).read_text()
        async def handler():
            return load("settings.json")
        """,
        [f"ASY106 {S}:5 handler -> {S}:3 <lambda> -> pathlib.Path.read_text"],
    ),
    Snippet(
        "lambda-only-passed-around-is-safe",
        """
        import asyncio
        import requests
        from asyncify_kit import run_sync
        async def handler(url, urls):
            fetch = lambda: requests.get(url)
            await run_sync(fetch)
            await asyncio.to_thread(lambda: requests.get(url))
            return sorted(urls, key=lambda u: requests.get(u).status_code)
        """,
        [],
    ),
    # -- offloaded calls are safe ----------------------------------------------------
    Snippet(
        "offload-sync-to-async-and-asyncer",
        """
        import requests
        from asgiref.sync import sync_to_async
        import asyncer
        @sync_to_async
        def fetch(url):
            return requests.get(url)
        async def handler(url):
            await fetch(url)
            return await asyncer.asyncify(requests.get)(url)
        """,
        [],
    ),
    Snippet(
        "offload-trio-and-anyio-partial",
        """
        import functools
        import time
        import anyio.to_thread
        import trio
        async def handler():
            await trio.to_thread.run_sync(time.sleep, 1)
            await anyio.to_thread.run_sync(functools.partial(time.sleep, 1))
        """,
        [],
    ),
    Snippet(
        "offload-gather-of-run-sync",
        """
        import asyncio
        import requests
        from asyncify_kit import run_sync
        async def handler(urls):
            return await asyncio.gather(*(run_sync(requests.get, u) for u in urls))
        """,
        [],
    ),
    Snippet(
        "offload-asyncify-method",
        """
        import time
        import asyncify_kit as ak
        class Worker:
            @ak.asyncify
            def crunch(self):
                time.sleep(1)
        async def handler():
            await Worker().crunch()
        """,
        [],
    ),
    # -- found by the second audit -----------------------------------------------------
    Snippet(
        "with-calls-enter-and-exit",
        """
        import time
        import requests
        class Transaction:
            def __enter__(self):
                time.sleep(1)
                return self
            def __exit__(self, *exc):
                requests.post("https://example.com/commit")
        async def handler():
            with Transaction():
                pass
        async def handler_named():
            tx = Transaction()
            with tx:
                pass
        """,
        [
            f"ASY101 {S}:11 handler -> {S}:9 Transaction.__exit__ -> requests.post",
            f"ASY111 {S}:11 handler -> {S}:6 Transaction.__enter__ -> time.sleep",
            f"ASY101 {S}:15 handler_named -> {S}:9 Transaction.__exit__ -> requests.post",
            f"ASY111 {S}:15 handler_named -> {S}:6 Transaction.__enter__ -> time.sleep",
        ],
    ),
    Snippet(
        "async-with-does-not-call-enter",
        """
        import time
        class Both:
            def __enter__(self):
                time.sleep(1)
            def __exit__(self, *exc):
                time.sleep(1)
            async def __aenter__(self):
                return self
            async def __aexit__(self, *exc):
                return None
        async def handler():
            async with Both():
                pass
        """,
        [],
    ),
    Snippet(
        "dataclass-post-init",
        """
        from dataclasses import dataclass
        @dataclass
        class Settings:
            path: str
            text: str = ""
            def __post_init__(self):
                self.text = open(self.path).read()
        async def handler():
            return Settings("app.toml").text
        """,
        [f"ASY105 {S}:10 handler -> {S}:8 Settings.__post_init__ -> builtins.open"],
    ),
    Snippet(
        "global-set-in-another-function",
        """
        import psycopg2
        _conn = None
        def init(dsn):
            global _conn
            _conn = psycopg2.connect(dsn)
        def count():
            cur = _conn.cursor()
            cur.execute("select count(*) from items")
            return cur.fetchone()
        async def handler():
            return count()
        """,
        [
            f"ASY108 {S}:12 handler -> {S}:10 count -> psycopg2.cursor.fetchone",
            f"ASY108 {S}:12 handler -> {S}:9 count -> psycopg2.cursor.execute",
        ],
    ),
    Snippet(
        "nonlocal-set-in-a-nested-function",
        """
        import requests
        def load():
            session = None
            def connect():
                nonlocal session
                session = requests.Session()
            connect()
            return session.get("https://example.com")
        async def handler():
            return load()
        """,
        [f"ASY101 {S}:11 handler -> {S}:9 load -> requests.Session.get"],
    ),
    Snippet(
        "class-attribute-set-through-cls",
        """
        import boto3
        class Store:
            _client = None
            @classmethod
            def client(cls):
                if cls._client is None:
                    cls._client = boto3.client("s3")
                return cls._client
            @classmethod
            def get(cls, key):
                return cls._client.get_object(Bucket="b", Key=key)
        async def handler():
            Store.get("k")
            return Store.client().list_buckets()
        """,
        [
            f"ASY104 {S}:14 handler -> {S}:12 Store.get -> boto3.client.get_object",
            f"ASY104 {S}:15 handler -> boto3.client.list_buckets",
        ],
    ),
    Snippet(
        "tuple-assignment-pairs-values",
        """
        import sqlite3
        class Repo:
            def __init__(self, path):
                self.conn, self.path = sqlite3.connect(path), path
            def all(self):
                return self.conn.execute("select * from items").fetchall()
        async def handler():
            return Repo("app.db").all()
        """,
        [
            f"ASY110 {S}:9 handler -> {S}:5 Repo.__init__ -> sqlite3.connect",
            f"ASY110 {S}:9 handler -> {S}:7 Repo.all -> sqlite3.Connection.execute",
            f"ASY110 {S}:9 handler -> {S}:7 Repo.all -> sqlite3.Cursor.fetchall",
        ],
    ),
    Snippet(
        "offload-configured-decorator-and-project-wrappers",
        """
        import time
        from asyncify_kit import asyncify
        db_thread = asyncify(pool="db", timeout=5)
        def threaded(fn):
            return asyncify(fn, pool="io")
        def in_pool(pool):
            def decorate(fn):
                return asyncify(fn, pool=pool)
            return decorate
        def logged(fn):
            return fn
        @db_thread
        def one():
            time.sleep(1)
        @threaded
        def two():
            time.sleep(1)
        @in_pool("io")
        def three():
            time.sleep(1)
        @logged
        def four():
            time.sleep(1)
        async def handler():
            await one()
            await two()
            await three()
            four()
        """,
        [f"ASY111 {S}:29 handler -> {S}:24 four -> time.sleep"],
    ),
    # -- found by the fourth audit -----------------------------------------------------
    Snippet(
        "from-package-import-prefers-its-binding-over-the-submodule",
        {
            "app/__init__.py": "",
            # ``s3`` the object (named like its submodule), ``mail`` the submodule itself
            "app/clients/__init__.py": "from .s3 import s3\nfrom . import mail\n",
            "app/clients/s3.py": "import boto3\ns3 = boto3.client('s3')\n",
            "app/clients/mail.py": "import smtplib\ndef send():\n    smtplib.SMTP('mx')\n",
            "app/clients/files.py": "def read(p):\n    return open(p).read()\n",
            "app/api.py": """
                from app.clients import s3, mail, files
                async def upload(key):
                    s3.put_object(Bucket="b", Key=key)
                async def notify():
                    mail.send()
                async def load(path):
                    return files.read(path)
                """,
        },
        [
            "ASY104 app/api.py:4 upload -> boto3.client.put_object",
            "ASY118 app/api.py:6 notify -> app/clients/mail.py:3 send -> smtplib.SMTP",
            "ASY105 app/api.py:8 load -> app/clients/files.py:2 read -> builtins.open",
        ],
    ),
    Snippet(
        "generator-handed-to-a-call-runs-nothing-on-the-loop",
        """
        import asyncio
        import sqlite3
        from fastapi.responses import StreamingResponse
        from starlette.concurrency import iterate_in_threadpool
        def iterfile(path):
            with open(path, mode="rb") as f:
                yield from f
        def export_rows():
            conn = sqlite3.connect("app.db")
            for row in conn.execute("select * from orders"):
                yield ",".join(map(str, row))
        async def video():
            return StreamingResponse(iterfile("video.mp4"), media_type="video/mp4")
        async def export():
            rows = export_rows()
            return StreamingResponse(rows, media_type="text/csv")
        async def count_rows():
            return [row async for row in iterate_in_threadpool(export_rows())]
        async def all_rows():
            return await asyncio.to_thread(list, export_rows())
        """,
        [],
    ),
    Snippet(
        "generator-iterated-on-the-loop",
        """
        import time
        def ticks():
            time.sleep(1)
            yield 1
        def relay():
            yield from ticks()
        def make():
            return ticks()
        async def loop():
            for tick in ticks():
                pass
        async def listed():
            return list(ticks())
        async def named():
            it = ticks()
            return next(it)
        async def joined():
            return "".join(str(t) for t in relay())
        async def returned():
            for tick in make():
                pass
        def consume(it):
            return sum(it)
        async def handed_to_the_project():
            return consume(ticks())
        async def written(writer):
            writer.writerows(items=ticks())
        """,
        [
            f"ASY111 {S}:11 loop -> {S}:4 ticks -> time.sleep",
            f"ASY111 {S}:14 listed -> {S}:4 ticks -> time.sleep",
            f"ASY111 {S}:16 named -> {S}:4 ticks -> time.sleep",
            f"ASY111 {S}:19 joined -> {S}:7 relay -> {S}:4 ticks -> time.sleep",
            f"ASY111 {S}:21 returned -> {S}:9 make -> {S}:4 ticks -> time.sleep",
            f"ASY111 {S}:26 handed_to_the_project -> {S}:4 ticks -> time.sleep",
            f"ASY111 {S}:28 written -> {S}:4 ticks -> time.sleep",
        ],
    ),
    Snippet(
        "psycopg-pools",
        """
        from psycopg2.pool import SimpleConnectionPool, ThreadedConnectionPool
        from psycopg_pool import ConnectionPool
        pg2 = ThreadedConnectionPool(1, 10, "dbname=app")
        pg3 = ConnectionPool("dbname=app")
        async def a():
            conn = pg2.getconn()
            with conn.cursor() as cur:
                cur.execute("select 1")
            pg2.putconn(conn)
        async def b():
            with pg3.connection() as conn:
                return conn.execute("select 1").fetchall()
        async def c(pool: SimpleConnectionPool):
            return pool.getconn().cursor().fetchone()
        """,
        [
            f"ASY108 {S}:7 a -> psycopg2.pool.AbstractConnectionPool.getconn",
            f"ASY108 {S}:9 a -> psycopg2.cursor.execute",
            f"ASY108 {S}:10 a -> psycopg2.pool.AbstractConnectionPool.putconn",
            f"ASY108 {S}:12 b -> psycopg_pool.ConnectionPool.connection",
            f"ASY108 {S}:13 b -> psycopg.Connection.execute",
            f"ASY108 {S}:13 b -> psycopg.Cursor.fetchall",
            f"ASY108 {S}:15 c -> psycopg2.cursor.fetchone",
            f"ASY108 {S}:15 c -> psycopg2.pool.AbstractConnectionPool.getconn",
        ],
    ),
    Snippet(
        "boto3-resource-collections",
        """
        import boto3
        s3 = boto3.resource("s3")
        async def keys(prefix):
            return [o.key for o in s3.Bucket("media").objects.filter(Prefix=prefix)]
        async def every_key():
            bucket = s3.Bucket("media")
            for obj in bucket.objects.all():
                yield obj.key
        """,
        [
            f"ASY104 {S}:5 keys -> boto3.resource.filter",
            f"ASY104 {S}:8 every_key -> boto3.resource.all",
        ],
    ),
    Snippet(
        "ignore-comment-on-any-line-of-a-multi-line-signature",
        """
        import time
        import requests
        async def handler(
            request,
            user_id: int,
        ):  # asyncify: ignore[time-sleep]
            time.sleep(1)
            requests.get("https://example.com")
        async def other(
            request,  # asyncify: ignore
            user_id: int,
        ) -> None:
            time.sleep(1)
        async def body_comment(
            request,
        ):
            # asyncify: ignore
            time.sleep(1)
        """,
        [
            f"ASY101 {S}:9 handler -> requests.get",
            f"ASY111 {S}:19 body_comment -> time.sleep",
        ],
    ),
    Snippet(
        "ignore-comment-with-a-space-before-the-bracket-and-reasons",
        """
        import time
        import requests
        async def other(url):
            data = open(requests.get(url).text).read()  # asyncify: ignore [ASY105]
            time.sleep(1)  # asyncify: ignore[time-sleep]  (a test double, instant)
            time.sleep(2)  # asyncify: ignore  # a test double too
            return data
        """,
        [f"ASY101 {S}:5 other -> requests.get"],
    ),
    Snippet(
        "archives-glob-which-and-resolve",
        """
        import bz2, glob, gzip, lzma, shutil, tarfile, zipfile
        from pathlib import Path
        async def handler(name: str, p: Path):
            glob.glob("/data/*.csv")
            gzip.open(name).read()
            bz2.open(name)
            lzma.open(name)
            zipfile.ZipFile(name).namelist()
            tarfile.open(name)
            shutil.which("ffmpeg")
            return p.resolve()
        """,
        [
            f"ASY107 {S}:5 handler -> glob.glob",
            f"ASY105 {S}:6 handler -> gzip.open",
            f"ASY105 {S}:7 handler -> bz2.open",
            f"ASY105 {S}:8 handler -> lzma.open",
            f"ASY105 {S}:9 handler -> zipfile.ZipFile",
            f"ASY105 {S}:10 handler -> tarfile.open",
            f"ASY107 {S}:11 handler -> shutil.which",
            f"ASY106 {S}:12 handler -> pathlib.Path.resolve",
        ],
    ),
    # -- found by the fifth audit -----------------------------------------------------
    Snippet(
        "with-target-is-what-entering-the-context-gives",
        {
            "db.py": """
                import sqlite3
                from contextlib import asynccontextmanager, contextmanager
                from typing import Self
                import requests
                from sqlalchemy import create_engine
                from sqlalchemy.orm import sessionmaker
                SessionLocal = sessionmaker(bind=create_engine("sqlite://"))
                @contextmanager
                def session_scope():
                    session = SessionLocal()
                    try:
                        yield session
                    finally:
                        session.close()
                @asynccontextmanager
                async def http_session():
                    s = requests.Session()
                    yield s
                class Cursor:
                    def __init__(self, conn: sqlite3.Connection):
                        self.conn = conn
                    def __enter__(self):
                        return self.conn.cursor()
                    def __exit__(self, *exc):
                        pass
                class Store:
                    def __init__(self, conn: sqlite3.Connection):
                        self.conn = conn
                    def __enter__(self) -> Self:
                        return self
                    def __exit__(self, *exc):
                        pass
                    def count(self):
                        return self.conn.execute("select count(*) from t")
                """,
            "api.py": """
                import sqlite3
                from contextlib import closing
                from db import Cursor, Store, http_session, session_scope
                async def users():
                    with session_scope() as s:
                        return s.execute("select * from users").all()
                async def page():
                    async with http_session() as s:
                        return s.get("https://example.com")
                async def count(path):
                    with closing(sqlite3.connect(path)) as conn:
                        return conn.execute("select count(*) from t").fetchone()
                async def count2(conn: sqlite3.Connection):
                    with Cursor(conn) as cur:
                        cur.execute("select count(*) from t")
                    with Store(conn) as store:
                        return store.count()
                """,
        },
        [
            "ASY115 api.py:7 users -> sqlalchemy.orm.Session.execute",
            "ASY101 api.py:10 page -> requests.Session.get",
            "ASY110 api.py:12 count -> sqlite3.connect",
            "ASY110 api.py:13 count -> sqlite3.Connection.execute",
            "ASY110 api.py:13 count -> sqlite3.Cursor.fetchone",
            "ASY110 api.py:16 count2 -> sqlite3.Cursor.execute",
            "ASY110 api.py:18 count2 -> db.py:35 Store.count -> sqlite3.Connection.execute",
        ],
    ),
    Snippet(
        "self-is-looked-up-on-the-receiving-subclass",
        """
        from abc import ABC, abstractmethod
        import boto3
        import requests
        class BaseClient(ABC):
            def load(self, key):
                return self._fetch(key)
            @abstractmethod
            def _fetch(self, key): ...
        class HttpClient(BaseClient):
            def _fetch(self, key):
                return requests.get(key)
        class MemoryClient(BaseClient):
            def _fetch(self, key):
                return {}.get(key)
        class BaseRepo:
            def fetch(self, key):
                return self.session.get(key)
        class UsersRepo(BaseRepo):
            def __init__(self):
                self.session = requests.Session()
        class S3Mixin:
            def save(self, key):
                self.s3.put_object(Bucket="b", Key=key, Body=b"")
        class S3Holder:
            def __init__(self):
                self.s3 = boto3.client("s3")
        class Store(S3Mixin, S3Holder):
            pass
        async def handler(key):
            HttpClient().load(key)
            MemoryClient().load(key)
            UsersRepo().fetch(key)
            Store().save(key)
        """,
        [
            f"ASY101 {S}:31 handler -> {S}:7 BaseClient.load -> {S}:12 HttpClient._fetch"
            " -> requests.get",
            f"ASY101 {S}:33 handler -> {S}:18 BaseRepo.fetch -> requests.Session.get",
            f"ASY104 {S}:34 handler -> {S}:24 S3Mixin.save -> boto3.client.put_object",
        ],
    ),
    Snippet(
        "vague-annotations-give-way-to-the-assigned-client",
        """
        from dataclasses import dataclass, field
        from typing import Any, Optional, Protocol
        import boto3
        import requests
        def make_s3():
            return boto3.client("s3")
        class HttpLike(Protocol):
            def get(self, url: str) -> Any: ...
        class WithAny:
            session: Any = None
            def __init__(self):
                self.session = requests.Session()
            def fetch(self):
                return self.session.get("u")
        class WithProtocol:
            session: HttpLike
            def __init__(self, session: Optional[HttpLike] = None):
                self.session = session or requests.Session()
            def fetch(self):
                return self.session.get("u")
        class WithObject:
            s3: object
            def __init__(self):
                self.s3 = boto3.client("s3")
            def put(self):
                self.s3.put_object(Bucket="b", Key="k", Body=b"")
        @dataclass
        class Factory:
            s3: object = field(default_factory=make_s3)
            def put(self):
                self.s3.put_object(Bucket="b", Key="k", Body=b"")
        @dataclass
        class Lambda:
            s3: Any = field(default_factory=lambda: boto3.client("s3"))
            def put(self):
                self.s3.put_object(Bucket="b", Key="k", Body=b"")
        async def handler():
            WithAny().fetch()
            WithProtocol().fetch()
            WithObject().put()
            Factory().put()
            Lambda().put()
        """,
        [
            f"ASY101 {S}:39 handler -> {S}:15 WithAny.fetch -> requests.Session.get",
            f"ASY101 {S}:40 handler -> {S}:21 WithProtocol.fetch -> requests.Session.get",
            f"ASY104 {S}:41 handler -> {S}:27 WithObject.put -> boto3.client.put_object",
            f"ASY104 {S}:42 handler -> {S}:32 Factory.put -> boto3.client.put_object",
            f"ASY104 {S}:43 handler -> {S}:37 Lambda.put -> boto3.client.put_object",
        ],
    ),
    Snippet(
        "boto3-stubs-renamed-package-and-resource-classes",
        """
        from mypy_boto3_dynamodb.service_resource import Table
        from mypy_boto3_s3.service_resource import Bucket, Object
        from mypy_boto3_sqs.service_resource import Queue
        from types_boto3_s3.client import S3Client
        from types_boto3_s3.paginator import ListObjectsV2Paginator
        from types_boto3_sqs import SQSClient
        async def a(sqs: SQSClient, s3: S3Client, pages: ListObjectsV2Paginator):
            sqs.send_message(QueueUrl="q", MessageBody="m")
            s3.get_object(Bucket="b", Key="k")
            pages.paginate(Bucket="b")
        async def b(table: Table, bucket: Bucket, obj: Object, queue: Queue):
            table.put_item(Item={})
            bucket.put_object(Key="k", Body=b"")
            obj.get()
            queue.send_message(MessageBody="m")
        """,
        [
            f"ASY104 {S}:9 a -> boto3.client.send_message",
            f"ASY104 {S}:10 a -> boto3.client.get_object",
            f"ASY104 {S}:11 a -> boto3.Paginator.paginate",
            f"ASY104 {S}:13 b -> boto3.resource.put_item",
            f"ASY104 {S}:14 b -> boto3.resource.put_object",
            f"ASY104 {S}:15 b -> boto3.resource.get",
            f"ASY104 {S}:16 b -> boto3.resource.send_message",
        ],
    ),
    Snippet(
        "suppress-blocking-io-is-a-non-blocking-socket-or-fd",
        """
        import contextlib
        import os
        import socket
        from contextlib import suppress
        class Waker:
            def __init__(self):
                self.sock = socket.socket()
                self.sock.setblocking(False)
            def wake(self):
                with contextlib.suppress(BlockingIOError):
                    self.sock.send(b"x")
            def wake_too(self):
                with suppress(InterruptedError, BlockingIOError):
                    self.sock.send(b"x")
            def drain(self):
                with suppress(OSError):
                    self.sock.recv(1)
        async def notify(waker: Waker, fd: int):
            waker.wake()
            waker.wake_too()
            waker.drain()
            try:
                os.write(fd, b"x")
            except BlockingIOError:
                pass
            with suppress(BlockingIOError):
                os.read(fd, 1)
            os.read(fd, 1)
        """,
        [
            f"ASY113 {S}:22 notify -> {S}:18 Waker.drain -> socket.socket.recv",
            f"ASY107 {S}:29 notify -> os.read",
        ],
    ),
    Snippet(
        "explicitly-non-blocking-waits",
        """
        import concurrent.futures
        import queue
        import threading
        lock = threading.Lock()
        event = threading.Event()
        jobs: queue.Queue = queue.Queue()
        async def poll(future: concurrent.futures.Future, thread: threading.Thread):
            if lock.acquire(blocking=False):
                lock.release()
            if lock.acquire(False) or lock.acquire(timeout=0):
                lock.release()
            jobs.get(block=False)
            jobs.get(False)
            jobs.get(True, 0)
            event.wait(0)
            event.wait(timeout=0.0)
            future.result(timeout=0)
            thread.join(0)
            lock.acquire(True)
            jobs.get(timeout=1)
            event.wait(timeout=5)
        """,
        [
            f"ASY114 {S}:20 poll -> threading.Lock.acquire",
            f"ASY114 {S}:21 poll -> queue.Queue.get",
            f"ASY114 {S}:22 poll -> threading.Event.wait",
        ],
    ),
    Snippet(
        "lazy-stdlib-iterators-block-where-iterated",
        """
        import asyncio
        import glob
        import os
        from pathlib import Path
        async def in_a_thread(p: Path, pattern: str):
            await asyncio.to_thread(list, os.walk(p))
            await asyncio.to_thread(sorted, p.rglob("*.py"))
            found = glob.iglob(pattern)
            await asyncio.to_thread(list, found)
            walker = p.walk()
            return await asyncio.to_thread(list, walker)
        async def on_the_loop(p: Path):
            for root, dirs, files in os.walk(p):
                pass
            names = p.glob("*.txt")
            return sorted(names), next(p.iterdir())
        """,
        [
            f"ASY107 {S}:14 on_the_loop -> os.walk",
            f"ASY106 {S}:16 on_the_loop -> pathlib.Path.glob",
            f"ASY106 {S}:17 on_the_loop -> pathlib.Path.iterdir",
        ],
    ),
    Snippet(
        "future-result-after-awaiting-it-through-wrap-future",
        """
        import asyncio
        from concurrent.futures import ThreadPoolExecutor
        executor = ThreadPoolExecutor(4)
        def work():
            return 1
        async def awaited():
            future = executor.submit(work)
            await asyncio.wrap_future(future)
            return future.result()
        async def too_early():
            future = executor.submit(work)
            value = future.result()
            await asyncio.wrap_future(future)
            return value
        """,
        [
            f"ASY114 {S}:13 too_early -> concurrent.futures.Future.result",
        ],
    ),
]


def write(tmp_path: Path, files: dict[str, str] | str) -> None:
    if isinstance(files, str):
        files = {S: files}
    for name, source in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


def test_corpus_has_at_least_forty_snippets() -> None:
    assert len(CORPUS) >= 40
    assert len({snippet.id for snippet in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("snippet", CORPUS, ids=[snippet.id for snippet in CORPUS])
def test_snippet(tmp_path: Path, snippet: Snippet) -> None:
    write(tmp_path, snippet.files)
    result = scan_paths([tmp_path], root=tmp_path)
    found = [f"{f.rule_id} {f.chain_text()}" for f in result.findings]
    assert found == snippet.expected
