"""A small Hugging Face Hub-compatible HTTP server for tests: no network, real client.

It speaks the part of the Hub's HTTP API that ``huggingface_hub`` (and through it ``transformers``) uses to create a
repo, commit files (regular files inline as base64, large files through the git-LFS batch API), read repo info and
file listings, and download files (``hf_hub_download``, ``snapshot_download``, ``from_pretrained``):

| route | used by |
| --- | --- |
| ``POST /api/repos/create`` | ``create_repo`` (a new repo gets an initial commit with ``.gitattributes``) |
| ``GET /api/whoami-v2`` | ``whoami`` |
| ``POST /api/validate-yaml`` | ``create_commit`` when ``README.md`` is committed |
| ``GET /api/{type}s/{repo}[/revision/{rev}]`` | ``model_info`` / ``repo_info`` (``sha``, ``siblings``, ``cardData``) |
| ``GET /api/{type}s/{repo}/tree/{rev}[/{path}]`` | ``list_repo_tree`` / ``list_repo_files`` / ``snapshot_download`` |
| ``POST /api/{type}s/{repo}/paths-info/{rev}`` | ``get_paths_info`` |
| ``GET /api/{type}s/{repo}/commits/{rev}`` | ``list_repo_commits`` |
| ``POST /api/{type}s/{repo}/branch/{name}`` | ``create_branch`` |
| ``POST /api/{type}s/{repo}/preupload/{rev}`` | decides ``regular`` vs ``lfs`` upload per file |
| ``POST /api/{type}s/{repo}/commit/{rev}`` | the NDJSON commit (``file``, ``lfsFile``, ``deletedFile``, ``deletedFolder``) |
| ``POST /{repo}.git/info/lfs/objects/batch`` and ``.../verify`` | git-LFS upload of large files |
| ``HEAD/GET /{repo}/resolve/{rev}/{path}`` | downloads: ``ETag``, ``X-Repo-Commit``, ``Content-Length``; LFS files answer a 302 to the "CDN" |

The "CDN" is a second listener on another port (another origin, as on the real Hub), so the client treats LFS
downloads exactly as it treats the Hub's CDN: it takes the metadata from the 302 (``X-Linked-Etag``,
``X-Linked-Size``) and must not send its token there (recorded in :attr:`HubServer.requests`).

Large files: the client uploads LFS files through Xet storage when ``hf_xet`` is installed; this server has no Xet
service, so a client that should upload LFS files to it must set ``HF_HUB_DISABLE_XET=1`` (the legacy LFS protocol).
Files smaller than ``lfs_threshold`` that match no LFS pattern of the repo's ``.gitattributes`` take the regular path.

Commit ids are real git object ids: blobs, trees and commits are hashed as git hashes them, and an LFS file's blob
id is the id of its pointer file, as on the Hub. Repos live in a folder (one JSON file per repo, one file per LFS
object named by its sha256). Only "write" needs the token; private repos also need it to be read.

Run it by hand: ``python tests/hub_server.py --root /tmp/hub`` prints the endpoint to put in ``HF_ENDPOINT``.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

DEFAULT_TOKEN = "hf_a2gen_hub_server_test_token"
DEFAULT_USER = "a2gen-tester"
LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub's: larger files must go through LFS
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# The start of the .gitattributes that the Hub writes into every new repo.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.gz", "*.h5", "*.joblib", "*.model", "*.msgpack",
        "*.npy", "*.npz", "*.onnx", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.safetensors",
        "*.tar", "*.tflite", "*.zip", "*.zst",
    )
)


class HubError(Exception):
    """An HTTP error answered the way the Hub answers it (``X-Error-Code`` drives the client's exception type)."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.commit = commit


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it: which listener, method, path, and whether it carried a token."""

    listener: str  # "hub" or "cdn"
    method: str
    path: str
    authorization: str | None


# --- git object ids -------------------------------------------------------------------------------------------------


def git_object_id(kind: str, body: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(body)}\0".encode() + body).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def tree_ids(files: dict[str, dict]) -> dict[str, str]:
    """Git tree ids of every folder of ``files`` (path -> entry with ``oid``), ``""`` being the root."""
    folders: dict[str, dict[str, tuple[str, str]]] = {"": {}}
    for path in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folders.setdefault("/".join(parts[:depth]), {})
    for path, entry in files.items():
        parent, _, name = path.rpartition("/")
        folders[parent][name] = ("100644", entry["oid"])
    ids: dict[str, str] = {}
    # Deepest folders first, so a folder's subtrees have ids when the folder is hashed.
    for folder in sorted(folders, key=lambda f: f.count("/") + (f != ""), reverse=True):
        entries = folders[folder]
        for sub, sub_id in ids.items():
            if sub.rpartition("/")[0] == folder and sub != "":
                entries[sub.rpartition("/")[2]] = ("40000", sub_id)
        # Git orders a tree's entries by name, with a "/" appended to the names of subtrees.
        ordered = sorted(entries.items(), key=lambda item: item[0] + ("/" if item[1][0] == "40000" else ""))
        body = b"".join(f"{mode} {name}\0".encode() + bytes.fromhex(oid) for name, (mode, oid) in ordered)
        ids[folder] = git_object_id("tree", body)
    return ids


# --- storage --------------------------------------------------------------------------------------------------------


class HubStorage:
    """Repos of one server, kept in ``root``: ``repos/{type}/{namespace}/{name}.json`` and ``lfs/{sha256}``."""

    def __init__(self, root: Path, lfs_threshold: int):
        self.root = Path(root)
        self.lfs_threshold = lfs_threshold
        self.lock = threading.RLock()
        (self.root / "lfs").mkdir(parents=True, exist_ok=True)
        (self.root / "regular").mkdir(parents=True, exist_ok=True)

    # Repos
    def _repo_file(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / repo_type / f"{repo_id}.json"

    def load(self, repo_type: str, repo_id: str) -> dict | None:
        path = self._repo_file(repo_type, repo_id)
        return json.loads(path.read_text()) if path.exists() else None

    def save(self, repo_type: str, repo_id: str, repo: dict) -> None:
        path = self._repo_file(repo_type, repo_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(repo, indent=1))
        tmp.replace(path)

    # Content
    def store_regular(self, content: bytes) -> dict:
        oid = git_object_id("blob", content)
        (self.root / "regular" / oid).write_bytes(content)
        return {"oid": oid, "size": len(content)}

    def lfs_path(self, sha256: str) -> Path:
        return self.root / "lfs" / sha256

    def lfs_entry(self, sha256: str) -> dict:
        size = self.lfs_path(sha256).stat().st_size
        pointer = lfs_pointer(sha256, size)
        return {"oid": git_object_id("blob", pointer), "size": size, "lfs": {"oid": sha256, "size": size,
                                                                              "pointerSize": len(pointer)}}

    def read(self, entry: dict) -> bytes:
        if entry.get("lfs"):
            return self.lfs_path(entry["lfs"]["oid"]).read_bytes()
        return (self.root / "regular" / entry["oid"]).read_bytes()

    # Commits
    def commit(self, repo: dict, branch: str, files: dict[str, dict], title: str, description: str,
               author: str) -> str:
        parent = repo["refs"].get(branch)
        now = int(time.time())
        lines = [f"tree {tree_ids(files)['']}"]
        if parent:
            lines.append(f"parent {parent}")
        identity = f"{author} <{author}@users.noreply.huggingface.co> {now} +0000"
        lines += [f"author {identity}", f"committer {identity}", "", title + (f"\n\n{description}" if description
                                                                                 else "")]
        oid = git_object_id("commit", ("\n".join(lines) + "\n").encode())
        repo["commits"][oid] = {
            "parents": [parent] if parent else [], "title": title, "message": description, "author": author,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now)), "files": files,
        }
        repo["refs"][branch] = oid
        return oid


def _lfs_patterns(gitattributes: str) -> list[str]:
    return [line.split()[0] for line in gitattributes.splitlines() if "filter=lfs" in line.split()[1:]]


# --- HTTP -----------------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    server: _Listener

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        """Quiet: tests read :attr:`HubServer.requests` instead of stderr."""

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        hub.requests.append(RecordedRequest(self.server.role, method, split.path, self.headers.get("Authorization")))
        try:
            body = self._read_body()
            # Split before unquoting: a revision such as "refs%2Fpr%2F1" is one segment.
            segments = [unquote(part) for part in split.path.strip("/").split("/")]
            query = parse_qs(split.query)
            if self.server.role == "cdn":
                status, headers, payload = hub.handle_cdn(method, segments, body)
            else:
                status, headers, payload = hub.handle(method, segments, query, body, self.headers)
        except HubError as error:
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            if error.commit:
                headers["X-Repo-Commit"] = error.commit
            status, payload = error.status, {"error": error.message}
        self._respond(method, status, headers, payload)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _respond(self, method: str, status: int, headers: dict, payload) -> None:
        if isinstance(payload, (dict, list)):
            data = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        else:
            data = payload or b""
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, str(value))
        headers_lower = {key.lower() for key in headers}
        if "content-length" not in headers_lower:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)


class _Listener(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: HubServer, role: str, host: str, port: int):
        super().__init__((host, port), _Handler)
        self.hub = hub
        self.role = role


class HubServer:
    """
    A Hub-compatible server on ``host`` (a random free port by default) storing its repos under ``root``.

    Use it as a context manager, or call :meth:`start` / :meth:`stop`. Point a client at it with
    ``HF_ENDPOINT=server.url`` (set before ``huggingface_hub`` is imported), ``HF_TOKEN=server.token`` and, to
    upload LFS files, ``HF_HUB_DISABLE_XET=1``.

    Args:
        root: folder of the repos (created if missing).
        token: the one valid write token; ``user`` is its owner and the default namespace.
        lfs_threshold: files of at least this many bytes are uploaded through LFS (besides .gitattributes patterns).
    """

    def __init__(self, root: str | Path, token: str = DEFAULT_TOKEN, user: str = DEFAULT_USER,
                 lfs_threshold: int = LFS_THRESHOLD, host: str = "127.0.0.1", port: int = 0):
        self.storage = HubStorage(Path(root), lfs_threshold)
        self.token = token
        self.user = user
        self.requests: list[RecordedRequest] = []
        self._hub = _Listener(self, "hub", host, port)
        self._cdn = _Listener(self, "cdn", host, 0)
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._hub.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cdn_url(self) -> str:
        host, port = self._cdn.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        for listener in (self._hub, self._cdn):
            thread = threading.Thread(target=listener.serve_forever, name=f"hub-server-{listener.role}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for listener in (self._hub, self._cdn):
            listener.shutdown()
            listener.server_close()
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # Read access for tests ------------------------------------------------------------------------------------------
    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """The files of ``repo_id`` at ``revision``, as stored: path -> content."""
        with self.storage.lock:
            repo = self._repo(repo_type, repo_id, authorized=True)
            commit = self._resolve(repo, revision)
            return {path: self.storage.read(entry) for path, entry in repo["commits"][commit]["files"].items()}

    def file_entries(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, dict]:
        """Per path: ``oid`` (git blob id), ``size`` and, for LFS files, ``lfs`` (``oid`` = sha256)."""
        with self.storage.lock:
            repo = self._repo(repo_type, repo_id, authorized=True)
            return dict(repo["commits"][self._resolve(repo, revision)]["files"])

    # Routing ---------------------------------------------------------------------------------------------------------
    def handle(self, method: str, segments: list[str], query: dict, body: bytes, headers) -> tuple[int, dict, object]:
        authorized = self._authorized(headers.get("Authorization"))
        if segments[0] == "api":
            return self._handle_api(method, segments[1:], query, body, authorized)
        repo_type = "model"
        if segments[0] in ("datasets", "spaces"):
            repo_type, segments = REPO_TYPES[segments[0]], segments[1:]
        if len(segments) >= 2 and segments[1].endswith(".git"):
            repo_id = f"{segments[0]}/{segments[1][: -len('.git')]}"
            return self._handle_lfs(method, repo_type, repo_id, segments[2:], body, authorized)
        if len(segments) >= 5 and segments[2] == "resolve" and method in ("GET", "HEAD"):
            repo_id = f"{segments[0]}/{segments[1]}"
            return self._resolve_file(method, repo_type, repo_id, segments[3], "/".join(segments[4:]), headers,
                                      authorized)
        raise self._unknown_route(method, segments)

    def _handle_api(self, method, segments, query, body, authorized) -> tuple[int, dict, object]:
        if segments == ["whoami-v2"] and method == "GET":
            self._require_write(authorized)
            return 200, {}, {"type": "user", "name": self.user, "auth": {"type": "access_token",
                                                                          "accessToken": {"role": "write"}}}
        if segments == ["repos", "create"] and method == "POST":
            return self._create_repo(json.loads(body), authorized)
        if segments == ["validate-yaml"] and method == "POST":
            return self._validate_yaml(json.loads(body))
        if len(segments) >= 3 and segments[0] in REPO_TYPES:
            repo_type, repo_id, rest = REPO_TYPES[segments[0]], f"{segments[1]}/{segments[2]}", segments[3:]
            if not rest and method == "GET":
                return self._repo_info(repo_type, repo_id, "main", query, authorized)
            if len(rest) == 2 and rest[0] == "revision" and method == "GET":
                return self._repo_info(repo_type, repo_id, rest[1], query, authorized)
            if len(rest) >= 2 and rest[0] == "tree" and method == "GET":
                return self._tree(repo_type, repo_id, rest[1], "/".join(rest[2:]), query, authorized)
            if len(rest) == 2 and rest[0] == "paths-info" and method == "POST":
                return self._paths_info(repo_type, repo_id, rest[1], parse_qs(body.decode()), authorized)
            if len(rest) == 2 and rest[0] == "commits" and method == "GET":
                return self._list_commits(repo_type, repo_id, rest[1], authorized)
            if len(rest) == 2 and rest[0] == "branch" and method == "POST":
                return self._create_branch(repo_type, repo_id, rest[1], json.loads(body or b"{}"), authorized)
            if len(rest) == 2 and rest[0] == "preupload" and method == "POST":
                return self._preupload(repo_type, repo_id, rest[1], json.loads(body), authorized)
            if len(rest) == 2 and rest[0] == "commit" and method == "POST":
                return self._commit(repo_type, repo_id, rest[1], body, query, authorized)
        raise self._unknown_route(method, ["api", *segments])

    @staticmethod
    def _unknown_route(method: str, segments: list[str]) -> HubError:
        path = "/" + "/".join(segments)
        hint = (" This test Hub has no Xet storage: set HF_HUB_DISABLE_XET=1 so the client uploads large files"
                " with the git-LFS protocol." if "xet" in path else "")
        return HubError(404, f"hub_server does not implement {method} {path}.{hint}")

    # Auth and lookup -------------------------------------------------------------------------------------------------
    def _authorized(self, authorization: str | None) -> bool:
        if authorization is None:
            return False
        if authorization != f"Bearer {self.token}":
            raise HubError(401, "Invalid credentials in Authorization header")
        return True

    @staticmethod
    def _require_write(authorized: bool) -> None:
        if not authorized:
            raise HubError(401, "Authentication required: send 'Authorization: Bearer <token>' (set HF_TOKEN).")

    def _repo(self, repo_type: str, repo_id: str, authorized: bool) -> dict:
        repo = self.storage.load(repo_type, repo_id)
        if repo is None or (repo["private"] and not authorized):
            raise HubError(404, f"Repository {repo_id} ({repo_type}) not found.", code="RepoNotFound")
        return repo

    @staticmethod
    def _resolve(repo: dict, revision: str) -> str:
        if revision in repo["refs"]:
            return repo["refs"][revision]
        if revision in repo["commits"]:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.url}/{URL_PREFIXES[repo_type]}{repo_id}"

    # Repos -----------------------------------------------------------------------------------------------------------
    def _create_repo(self, payload: dict, authorized: bool) -> tuple[int, dict, object]:
        self._require_write(authorized)
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or self.user
        repo_id = f"{namespace}/{payload['name']}"
        with self.storage.lock:
            if self.storage.load(repo_type, repo_id) is not None:
                # The Hub's 409 still names the repo: create_repo(exist_ok=True) reads its url.
                message = f"You already created this {repo_type} repo: {repo_id}"
                return 409, {"X-Error-Message": message}, {"error": message, "url": self._repo_url(repo_type, repo_id)}
            repo = {"private": payload.get("visibility", "public") != "public" or bool(payload.get("private")),
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "refs": {}, "commits": {}}
            files = {".gitattributes": self.storage.store_regular(DEFAULT_GITATTRIBUTES.encode())}
            self.storage.commit(repo, "main", files, "initial commit", "", self.user)
            self.storage.save(repo_type, repo_id, repo)
        return 200, {}, {"url": self._repo_url(repo_type, repo_id), "name": repo_id, "id": repo_id}

    def _create_branch(self, repo_type, repo_id, branch, payload, authorized) -> tuple[int, dict, object]:
        self._require_write(authorized)
        with self.storage.lock:
            repo = self._repo(repo_type, repo_id, authorized)
            if branch in repo["refs"]:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            repo["refs"][branch] = self._resolve(repo, payload.get("startingPoint", "main"))
            self.storage.save(repo_type, repo_id, repo)
        return 200, {}, {}

    @staticmethod
    def _validate_yaml(payload: dict) -> tuple[int, dict, object]:
        content = payload.get("content", "")
        if not content.startswith("---"):
            return 200, {}, {"warnings": [{"message": "empty or missing yaml metadata in repo card"}]}
        try:
            metadata = yaml.safe_load(content.split("---", 2)[1])
        except (yaml.YAMLError, IndexError) as error:
            return 400, {"X-Error-Message": "Invalid YAML"}, {"errors": [{"message": f"Invalid YAML: {error}"}]}
        if not isinstance(metadata, dict):
            return 400, {"X-Error-Message": "Invalid YAML"}, {"errors": [{"message": "metadata must be a mapping"}]}
        errors = [{"message": f'"model-index[{i}].name" is required'}
                  for i, entry in enumerate(metadata.get("model-index") or []) if "name" not in entry]
        if errors:
            return 400, {"X-Error-Message": "Invalid metadata"}, {"errors": errors}
        return 200, {}, {}

    @staticmethod
    def _card_data(readme: bytes | None) -> dict | None:
        if not readme or not readme.startswith(b"---"):
            return None
        try:
            metadata = yaml.safe_load(readme.decode().split("---", 2)[1])
        except (yaml.YAMLError, IndexError):
            return None
        return metadata if isinstance(metadata, dict) else None

    def _repo_info(self, repo_type, repo_id, revision, query, authorized) -> tuple[int, dict, object]:
        with self.storage.lock:
            repo = self._repo(repo_type, repo_id, authorized)
            oid = self._resolve(repo, revision)
            commit = repo["commits"][oid]
            files = commit["files"]
            readme = self.storage.read(files["README.md"]) if "README.md" in files else None
            config = json.loads(self.storage.read(files["config.json"])) if "config.json" in files else None
        with_blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path, entry in sorted(files.items()):
            sibling = {"rfilename": path}
            if with_blobs:
                sibling.update(size=entry["size"], blobId=entry["oid"])
                if entry.get("lfs"):
                    sibling["lfs"] = {"sha256": entry["lfs"]["oid"], "size": entry["lfs"]["size"],
                                      "pointerSize": entry["lfs"]["pointerSize"]}
            siblings.append(sibling)
        card_data = self._card_data(readme)
        info = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "author": repo_id.split("/")[0],
            "sha": oid, "lastModified": commit["date"], "createdAt": repo["created_at"], "private": repo["private"],
            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": (card_data or {}).get("tags", []),
            "siblings": siblings,
        }
        if repo_type == "model":
            info["library_name"] = (card_data or {}).get("library_name")
            info["pipeline_tag"] = (card_data or {}).get("pipeline_tag")
            if config is not None:
                info["config"] = {key: config[key] for key in ("architectures", "model_type", "auto_map")
                                  if key in config}
        if card_data is not None:
            info["cardData"] = card_data
        return 200, {}, info

    @staticmethod
    def _path_info(path: str, entry: dict) -> dict:
        info = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
        if entry.get("lfs"):
            info["lfs"] = dict(entry["lfs"])
        return info

    def _tree(self, repo_type, repo_id, revision, folder, query, authorized) -> tuple[int, dict, object]:
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        with self.storage.lock:
            repo = self._repo(repo_type, repo_id, authorized)
            oid = self._resolve(repo, revision)
            files = repo["commits"][oid]["files"]
        folders = tree_ids(files)
        if folder and folder not in folders:
            raise HubError(404, f"{folder} does not exist on {revision}", code="EntryNotFound", commit=oid)
        prefix = f"{folder}/" if folder else ""
        listing = []
        for path in sorted(set(files) | (set(folders) - {""})):
            if not path.startswith(prefix) or (not recursive and "/" in path[len(prefix):]):
                continue
            if path in files:
                listing.append(self._path_info(path, files[path]))
            else:
                listing.append({"type": "directory", "oid": folders[path], "size": 0, "path": path})
        return 200, {}, listing

    def _paths_info(self, repo_type, repo_id, revision, form, authorized) -> tuple[int, dict, object]:
        with self.storage.lock:
            repo = self._repo(repo_type, repo_id, authorized)
            files = repo["commits"][self._resolve(repo, revision)]["files"]
        folders = tree_ids(files)
        infos = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in files:
                infos.append(self._path_info(path, files[path]))
            elif path in folders:
                infos.append({"type": "directory", "oid": folders[path], "size": 0, "path": path})
        return 200, {}, infos

    def _list_commits(self, repo_type, repo_id, revision, authorized) -> tuple[int, dict, object]:
        with self.storage.lock:
            repo = self._repo(repo_type, repo_id, authorized)
            oid = self._resolve(repo, revision)
            history = []
            while oid:
                commit = repo["commits"][oid]
                history.append({"id": oid, "title": commit["title"], "message": commit["message"],
                                "authors": [{"user": commit["author"]}], "date": commit["date"]})
                oid = commit["parents"][0] if commit["parents"] else None
        return 200, {}, history

    # Uploads ---------------------------------------------------------------------------------------------------------
    def _preupload(self, repo_type, repo_id, revision, payload, authorized) -> tuple[int, dict, object]:
        self._require_write(authorized)
        with self.storage.lock:
            repo = self._repo(repo_type, repo_id, authorized)
            files = repo["commits"][self._resolve(repo, revision)]["files"]
            gitattributes = (self.storage.read(files[".gitattributes"]).decode() if ".gitattributes" in files
                             else "")
        patterns = _lfs_patterns(gitattributes)
        answers = []
        for item in payload["files"]:
            path, size = item["path"], item["size"]
            is_lfs = size >= self.storage.lfs_threshold or any(
                fnmatch.fnmatch(path.rpartition("/")[2], pattern) or fnmatch.fnmatch(path, pattern)
                for pattern in patterns
            )
            existing = files.get(path)
            remote_oid = None
            if existing is not None:
                remote_oid = existing["lfs"]["oid"] if existing.get("lfs") else existing["oid"]
            answers.append({"path": path, "uploadMode": "lfs" if is_lfs else "regular", "shouldIgnore": False,
                            "oid": remote_oid})
        return 200, {}, {"files": answers, "commitOid": repo["refs"].get("main")}

    def _handle_lfs(self, method, repo_type, repo_id, rest, body, authorized) -> tuple[int, dict, object]:
        if method != "POST" or rest[:3] != ["info", "lfs", "objects"]:
            raise self._unknown_route(method, [repo_id + ".git", *rest])
        self._require_write(authorized)
        self._repo(repo_type, repo_id, authorized)
        payload = json.loads(body)
        lfs_headers = {"Content-Type": "application/vnd.git-lfs+json"}
        if rest[3:] == ["batch"]:
            if payload.get("operation") != "upload":
                raise HubError(400, "hub_server's LFS batch API only supports operation=upload.")
            objects = []
            for item in payload["objects"]:
                answer = {"oid": item["oid"], "size": item["size"], "authenticated": True}
                stored = self.storage.lfs_path(item["oid"])
                if not (stored.exists() and stored.stat().st_size == item["size"]):
                    answer["actions"] = {
                        "upload": {"href": f"{self.cdn_url}/lfs-upload/{item['oid']}"},
                        "verify": {"href": f"{self._repo_url(repo_type, repo_id)}.git/info/lfs/objects/verify"},
                    }
                objects.append(answer)
            return 200, lfs_headers, {"transfer": "basic", "objects": objects}
        if rest[3:] == ["verify"]:
            stored = self.storage.lfs_path(payload["oid"])
            if not (stored.exists() and stored.stat().st_size == payload["size"]):
                raise HubError(404, f"LFS object {payload['oid']} of {payload['size']} bytes was not uploaded.")
            return 200, lfs_headers, {}
        raise self._unknown_route(method, [repo_id + ".git", *rest])

    def handle_cdn(self, method: str, segments: list[str], body: bytes) -> tuple[int, dict, object]:
        """The storage host: takes LFS uploads (content checked against its sha256) and serves LFS downloads."""
        if len(segments) == 2 and segments[0] == "lfs-upload" and method == "PUT":
            sha256 = segments[1]
            if hashlib.sha256(body).hexdigest() != sha256:
                raise HubError(400, f"Uploaded content does not match sha256 {sha256}.")
            self.storage.lfs_path(sha256).write_bytes(body)
            return 200, {"ETag": f'"{hashlib.md5(body).hexdigest()}"'}, b""
        if len(segments) == 2 and segments[0] == "lfs-blob" and method in ("GET", "HEAD"):
            path = self.storage.lfs_path(segments[1])
            if not path.exists():
                raise HubError(404, f"No LFS object {segments[1]}.")
            return 200, {"ETag": f'"{segments[1]}"', "Content-Type": "application/octet-stream"}, path.read_bytes()
        raise self._unknown_route(method, segments)

    def _commit(self, repo_type, repo_id, revision, body, query, authorized) -> tuple[int, dict, object]:
        self._require_write(authorized)
        if query.get("create_pr", ["0"])[0] == "1":
            raise HubError(400, "hub_server does not support pull requests: commit without create_pr.")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "A commit payload starts with a 'header' line (summary, description).")
        header = lines[0]["value"]
        with self.storage.lock:
            repo = self._repo(repo_type, repo_id, authorized)
            head = self._resolve(repo, revision)
            if revision not in repo["refs"]:
                raise HubError(400, f"Commits go to a branch; {revision!r} is not one of {sorted(repo['refs'])}.")
            if header.get("parentCommit") not in (None, head):
                raise HubError(412, f"A commit has happened since {header['parentCommit']}; head is now {head}.")
            files = dict(repo["commits"][head]["files"])
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                path = value["path"].strip("/")
                if key == "file":
                    files[path] = self.storage.store_regular(base64.b64decode(value["content"]))
                elif key == "lfsFile":
                    stored = self.storage.lfs_path(value["oid"])
                    if not stored.exists():
                        raise HubError(422, f"LFS file {path} (sha256 {value['oid']}) was never uploaded.")
                    files[path] = self.storage.lfs_entry(value["oid"])
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                elif key == "deletedFolder":
                    removed = [p for p in files if p.startswith(path + "/")]
                    if not removed:
                        raise HubError(404, f"A file with this name doesn't exist: {path}/", code="EntryNotFound")
                    for p in removed:
                        del files[p]
                else:
                    raise HubError(400, f"Unknown commit operation {key!r}; hub_server knows file, lfsFile,"
                                        " deletedFile and deletedFolder.")
            oid = self.storage.commit(repo, revision, files, header["summary"], header.get("description", ""),
                                      self.user)
            self.storage.save(repo_type, repo_id, repo)
        return 200, {}, {"success": True, "commitOid": oid, "pullRequestUrl": None,
                         "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{oid}"}

    # Downloads -------------------------------------------------------------------------------------------------------
    def _resolve_file(self, method, repo_type, repo_id, revision, path, headers, authorized):
        with self.storage.lock:
            repo = self._repo(repo_type, repo_id, authorized)
            oid = self._resolve(repo, revision)
            entry = repo["commits"][oid]["files"].get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path} at {revision}", code="EntryNotFound", commit=oid)
        common = {"X-Repo-Commit": oid, "Accept-Ranges": "bytes"}
        if entry.get("lfs"):
            sha256 = entry["lfs"]["oid"]
            return 302, {**common, "Location": f"{self.cdn_url}/lfs-blob/{sha256}", "ETag": f'"{entry["oid"]}"',
                         "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": entry["size"]}, b""
        content = self.storage.read(entry)
        etag = {**common, "ETag": f'"{entry["oid"]}"', "Content-Type": "application/octet-stream"}
        if method == "HEAD":
            return 200, {**etag, "Content-Length": len(content)}, b""
        byte_range = headers.get("Range", "")
        if byte_range.startswith("bytes=") and byte_range[6:].endswith("-"):
            start = int(byte_range[6:-1])
            return 206, {**etag, "Content-Range": f"bytes {start}-{len(content) - 1}/{len(content)}"}, content[start:]
        return 200, etag, content


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a local Hub-compatible server (for tests and demos).")
    parser.add_argument("--root", required=True, help="folder where the repos are kept")
    parser.add_argument("--port", type=int, default=0, help="port of the Hub API (default: a free one)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the write token clients must send")
    args = parser.parse_args()
    with HubServer(args.root, token=args.token, port=args.port) as server:
        print(f"HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1  (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()


def point_clients_at(server: HubServer, monkeypatch) -> None:
    """Send this process's huggingface_hub and transformers Hub calls to ``server`` for one test (``monkeypatch``
    undoes it): the endpoint, the download URL template, plain HTTP uploads (no Xet), the token, and transformers'
    shared ``HfApi``, which keeps the endpoint of its first use (an earlier test's would reach the real Hub)."""
    import transformers.utils.hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", server.token)
    monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)
