"""The Kubernetes API test server speaks the real protocol: proven with kubernetes_asyncio's real
client, configured from the generated kubeconfig exactly as for a cluster.

These tests also pin down how kubernetes_asyncio surfaces each failure, which the kdns
reflector has to handle:

- ``_preload_content=False`` returns the raw aiohttp response and never raises for an HTTP
  error status: check ``resp.status`` yourself. Typed calls raise ``ApiException``.
- A watch from a compacted resourceVersion is HTTP 200 + an ERROR event; ``Watch`` turns it into
  ``ApiException(status=410)``. Without ``timeout_seconds`` it first retries once, silently, from
  the same (still expired) version.
- A connection refused is ``aiohttp.ClientConnectorError`` and a stream cut mid-chunk is
  ``aiohttp.ClientPayloadError``: neither is an ``ApiException``.
- A watch that ends cleanly (timeoutSeconds) stops ``Watch`` iteration when ``timeout_seconds``
  was given; without it ``Watch`` reconnects by itself from its last resourceVersion.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.k8sapi import (
    K8sApi,
    endpointslice,
    namespace,
    parse_label_selector,
    pod,
    service,
)

FINISHED = "status.phase!=Succeeded,status.phase!=Failed"


@pytest.fixture
def api() -> Iterator[K8sApi]:
    # Periodic bookmarks off: tests that want them ask, so event sequences stay exact.
    with K8sApi([namespace("default"), namespace("prod")], bookmark_interval=None) as server:
        yield server


async def _api_client(api: K8sApi, path: Path) -> client.ApiClient:
    # A private Configuration: load_kube_config would otherwise change the process-wide default.
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(api.kubeconfig(path)), client_configuration=cfg)
    return client.ApiClient(configuration=cfg)


@pytest.fixture
async def apiclient(api: K8sApi, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    async with await _api_client(api, tmp_path / "kubeconfig") as ac:
        yield ac


@pytest.fixture
def core(apiclient: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(apiclient)


async def call_raw(call: Any, **kwargs: Any) -> aiohttp.ClientResponse:
    """The aiohttp response of an API call. (The generated methods are annotated as returning
    the model even with _preload_content=False, hence the Any.)"""
    resp: aiohttp.ClientResponse = await call(_preload_content=False, **kwargs)
    return resp


async def raw(call: Any, **kwargs: Any) -> dict[str, Any]:
    """A list call's JSON body as the server sent it (no model classes)."""
    resp = await call_raw(call, **kwargs)
    async with resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def open_watch(call: Any, **kwargs: Any) -> aiohttp.ClientResponse:
    """A raw watch stream: the aiohttp response, read line by line with next_event()."""
    resp = await call_raw(call, watch=True, **kwargs)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["Transfer-Encoding"] == "chunked"
    return resp


async def next_event(resp: aiohttp.ClientResponse, timeout: float = 5) -> dict[str, Any]:
    line = await asyncio.wait_for(resp.content.readline(), timeout)
    assert line.endswith(b"\n"), line
    return json.loads(line)


def names(doc: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in doc["items"]]


# --- list --------------------------------------------------------------------------------------


async def test_list_pages_come_from_one_snapshot(api: K8sApi, core: client.CoreV1Api) -> None:
    api.load(service("default", f"svc-{i}", f"10.0.0.{i + 10}", [80]) for i in range(5))
    first = await raw(core.list_service_for_all_namespaces, limit=2)
    assert first["kind"] == "ServiceList" and first["apiVersion"] == "v1"
    assert names(first) == ["svc-0", "svc-1"]
    # Items of a typed list carry no kind/apiVersion, as from a real API server.
    assert "kind" not in first["items"][0] and "apiVersion" not in first["items"][0]
    assert first["metadata"]["remainingItemCount"] == 3
    snapshot_rv = first["metadata"]["resourceVersion"]
    assert snapshot_rv == str(api.resource_version)

    # Changes between pages do not show: every page is served as of the first page's version.
    api.delete("Service", "default", "svc-3")
    api.add(service("default", "svc-22", "10.0.0.99"))
    pages = [first]
    while token := pages[-1]["metadata"].get("continue"):
        pages.append(await raw(core.list_service_for_all_namespaces, limit=2, _continue=token))
    assert [n for page in pages for n in names(page)] == [f"svc-{i}" for i in range(5)]
    assert {page["metadata"]["resourceVersion"] for page in pages} == {snapshot_rv}

    fresh = await raw(core.list_service_for_all_namespaces)
    assert names(fresh) == ["svc-0", "svc-1", "svc-2", "svc-22", "svc-4"]
    assert "continue" not in fresh["metadata"]


async def test_continue_token_expires_with_compaction(api: K8sApi, core: client.CoreV1Api) -> None:
    api.load(service("default", f"svc-{i}", f"10.0.0.{i + 10}") for i in range(3))
    first = await core.list_service_for_all_namespaces(limit=1)
    api.compact()
    # A typed call raises ApiException carrying the Status body.
    with pytest.raises(ApiException) as caught:
        await core.list_service_for_all_namespaces(limit=1, _continue=first.metadata._continue)
    assert caught.value.status == 410
    assert json.loads(caught.value.body or b"")["reason"] == "Expired"
    # A raw call does not raise: the status is on the response.
    resp = await call_raw(
        core.list_service_for_all_namespaces, limit=1, _continue=first.metadata._continue
    )
    async with resp:
        assert resp.status == 410
    # A new list works and its version can be watched from.
    assert len((await core.list_service_for_all_namespaces()).items) == 3


async def test_list_resource_version_semantics(api: K8sApi, core: client.CoreV1Api) -> None:
    api.add(service("default", "a", "10.0.0.1"))
    old_rv = api.resource_version
    api.add(service("default", "b", "10.0.0.2"))
    exact = await raw(
        core.list_service_for_all_namespaces,
        resource_version=str(old_rv),
        resource_version_match="Exact",
    )
    assert names(exact) == ["a"] and exact["metadata"]["resourceVersion"] == str(old_rv)
    # NotOlderThan (the default when a version is set) and "0" may serve newer state.
    for rv in (str(old_rv), "0"):
        doc = await raw(core.list_service_for_all_namespaces, resource_version=rv)
        assert names(doc) == ["a", "b"]
    with pytest.raises(ApiException) as caught:
        await core.list_service_for_all_namespaces(resource_version=str(old_rv + 100))
    assert caught.value.status == 504


async def test_typed_models_for_every_resource(
    api: K8sApi, apiclient: client.ApiClient, core: client.CoreV1Api
) -> None:
    api.load(
        [
            service("prod", "db", None, [("pg", 5432)], headless=True),
            endpointslice("prod", "db-abc", "db", [("10.1.0.7", True, "db-0", "db-0")], [5432]),
            pod("prod", "db-0", "10.1.0.7", hostname="db-0", subdomain="db"),
        ]
    )
    svc = (await core.list_service_for_all_namespaces()).items[0]
    assert svc.spec.cluster_ip == "None" and svc.spec.ports[0].name == "pg"
    slices = await client.DiscoveryV1Api(apiclient).list_endpoint_slice_for_all_namespaces()
    assert slices.items[0].endpoints[0].hostname == "db-0"
    assert slices.items[0].metadata.labels["kubernetes.io/service-name"] == "db"
    assert (await core.list_pod_for_all_namespaces()).items[0].status.pod_ip == "10.1.0.7"
    assert [ns.metadata.name for ns in (await core.list_namespace()).items] == ["default", "prod"]


async def test_namespaced_paths_get_and_discovery(
    api: K8sApi, apiclient: client.ApiClient, core: client.CoreV1Api
) -> None:
    api.load([service("default", "web", "10.0.0.5"), service("prod", "web", "10.0.0.6")])
    prod = await core.list_namespaced_service("prod")
    assert [s.spec.cluster_ip for s in prod.items] == ["10.0.0.6"]
    one = await core.read_namespaced_service("web", "default")
    assert one.spec.cluster_ip == "10.0.0.5" and one.kind == "Service"
    assert (await core.read_namespace("prod")).metadata.name == "prod"
    with pytest.raises(ApiException) as caught:
        await core.read_namespaced_service("nope", "default")
    assert caught.value.status == 404
    assert (await client.VersionApi(apiclient).get_code()).major == "1"
    assert "v1" in (await client.CoreApi(apiclient).get_api_versions()).versions
    groups = await client.ApisApi(apiclient).get_api_versions()
    assert [g.name for g in groups.groups] == ["discovery.k8s.io"]


# --- watch -------------------------------------------------------------------------------------


async def test_watch_replays_from_resource_version_then_streams_live(
    api: K8sApi, core: client.CoreV1Api
) -> None:
    api.add(service("default", "before", "10.0.0.1"))
    listed_rv = (await core.list_service_for_all_namespaces()).metadata.resource_version
    api.add(service("default", "missed", "10.0.0.2"))
    api.modify(service("default", "before", "10.0.0.3"))
    api.add(pod("default", "other-resource", "10.1.0.1"))  # shares the counter, not the log

    seen: list[tuple[str, str, str]] = []
    w = watch.Watch()
    async for event in w.stream(
        core.list_service_for_all_namespaces, resource_version=listed_rv, timeout_seconds=10
    ):
        obj = event["raw_object"]
        # Watch events carry kind and apiVersion; Watch also builds the model object.
        assert (obj["kind"], obj["apiVersion"]) == ("Service", "v1")
        assert isinstance(event["object"], client.V1Service)
        seen.append((event["type"], obj["metadata"]["name"], obj["spec"]["clusterIP"]))
        if len(seen) == 2:
            api.delete("Service", "default", "missed")  # live, after the replay
        if len(seen) == 3:
            w.stop()
    await w.close()
    assert seen == [
        ("ADDED", "missed", "10.0.0.2"),
        ("MODIFIED", "before", "10.0.0.3"),
        ("DELETED", "missed", "10.0.0.2"),
    ]
    # The DELETED object's version is the deletion's: resuming from it misses nothing.
    assert w.resource_version == str(api.resource_version)


async def test_watch_without_resource_version_starts_with_current_state(
    api: K8sApi, core: client.CoreV1Api
) -> None:
    api.load([service("default", "a", "10.0.0.1"), service("prod", "b", "10.0.0.2")])
    resp = await open_watch(core.list_service_for_all_namespaces, timeout_seconds=10)
    async with resp:
        # "Get State and Start at Most Recent": synthetic ADDED events, then live ones.
        first, second = await next_event(resp), await next_event(resp)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in (first, second)] == [
            ("ADDED", "a"),
            ("ADDED", "b"),
        ]
        api.add(service("default", "c", "10.0.0.3"))
        assert (await next_event(resp))["object"]["metadata"]["name"] == "c"


async def test_namespaced_watch_sees_only_its_namespace(
    api: K8sApi, core: client.CoreV1Api
) -> None:
    rv = str(api.resource_version)
    resp = await open_watch(
        core.list_namespaced_service, namespace="prod", resource_version=rv, timeout_seconds=10
    )
    async with resp:
        api.add(service("default", "elsewhere", "10.0.0.1"))
        api.add(service("prod", "here", "10.0.0.2"))
        assert (await next_event(resp))["object"]["metadata"]["name"] == "here"


async def test_bookmarks_on_demand_only_when_allowed(api: K8sApi, core: client.CoreV1Api) -> None:
    rv = str(api.resource_version)
    with_bookmarks = await open_watch(
        core.list_pod_for_all_namespaces,
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=10,
    )
    without = await open_watch(
        core.list_pod_for_all_namespaces, resource_version=rv, timeout_seconds=10
    )
    async with with_bookmarks, without:
        await api.wait_until(lambda: api.watching("pods") == 2)
        api.add(service("default", "moves-the-counter", "10.0.0.1"))
        assert api.send_bookmark() == 1
        event = await next_event(with_bookmarks)
        # Only kind, apiVersion and metadata.resourceVersion: "everything up to here was sent".
        assert event == {
            "type": "BOOKMARK",
            "object": {
                "kind": "Pod",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(api.resource_version)},
            },
        }
        api.add(pod("default", "p", "10.1.0.1"))
        assert (await next_event(without))["type"] == "ADDED"  # no bookmark queued before it


async def test_periodic_bookmarks_advance_kubernetes_asyncio_watch(tmp_path: Path) -> None:
    with K8sApi(bookmark_interval=0.2) as api:
        async with await _api_client(api, tmp_path / "kubeconfig") as ac:
            core = client.CoreV1Api(ac)
            start = str(api.resource_version)
            api.add(service("default", "not-a-pod", "10.0.0.1"))
            w = watch.Watch()
            async for event in w.stream(
                core.list_pod_for_all_namespaces,
                resource_version=start,
                allow_watch_bookmarks=True,
                timeout_seconds=10,
            ):
                assert event["type"] == "BOOKMARK"
                break
            await w.close()
            # Watch tracks the bookmark's version, so a reconnect resumes past the service.
            assert w.resource_version == str(api.resource_version)


async def test_watch_from_compacted_version_gets_expired_error_event(
    api: K8sApi, core: client.CoreV1Api
) -> None:
    old_rv = api.resource_version
    api.add(service("default", "a", "10.0.0.1"))
    oldest = api.compact()
    resp = await open_watch(
        core.list_service_for_all_namespaces, resource_version=str(old_rv), timeout_seconds=10
    )
    async with resp:
        event = await next_event(resp)
        assert event == {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {old_rv} ({oldest})",
                "reason": "Expired",
                "code": 410,
            },
        }
        assert await resp.content.readline() == b""  # and the stream ends
    # After compaction the current version is valid: list, then watch from it, works.
    listed = await core.list_service_for_all_namespaces()
    assert listed.metadata.resource_version == str(oldest)
    resp = await open_watch(
        core.list_service_for_all_namespaces,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=10,
    )
    async with resp:
        api.add(service("default", "b", "10.0.0.2"))
        assert (await next_event(resp))["type"] == "ADDED"


async def test_kubernetes_asyncio_watch_raises_410(api: K8sApi, core: client.CoreV1Api) -> None:
    old_rv = str(api.resource_version)
    api.add(service("default", "a", "10.0.0.1"))
    api.compact()

    with pytest.raises(ApiException) as caught:
        async for _ in watch.Watch().stream(
            core.list_service_for_all_namespaces, resource_version=old_rv, timeout_seconds=5
        ):
            pass
    assert caught.value.status == 410
    assert str(caught.value.reason).startswith("Expired: too old resource version")
    assert api.count("watch", "services") == 1

    # Without timeout_seconds, Watch retries a 410 once by itself, from the same expired version
    # (it only knows the version it was given), then raises.
    api.clear_requests()
    with pytest.raises(ApiException) as caught:
        async for _ in watch.Watch().stream(
            core.list_service_for_all_namespaces, resource_version=old_rv
        ):
            pass
    assert caught.value.status == 410
    assert [q["resourceVersion"] for q in api.queries("watch", "services")] == [old_rv, old_rv]


async def test_watch_ends_cleanly_at_timeout_seconds(api: K8sApi, core: client.CoreV1Api) -> None:
    started = time.monotonic()
    events = [
        e
        async for e in watch.Watch().stream(
            core.list_service_for_all_namespaces,
            resource_version=str(api.resource_version),
            timeout_seconds=1,
        )
    ]
    assert events == []
    assert 0.9 < time.monotonic() - started < 5
    assert api.watching() == 0


async def test_end_watches_makes_kubernetes_asyncio_rewatch_from_its_last_version(
    api: K8sApi, core: client.CoreV1Api
) -> None:
    start = str(api.resource_version)
    api.add(service("default", "a", "10.0.0.1"))
    w = watch.Watch()
    # No timeout_seconds: Watch treats a cleanly ended stream as "reconnect", not "done".
    stream = w.stream(core.list_service_for_all_namespaces, resource_version=start)
    assert (await stream.__anext__())["type"] == "ADDED"
    seen_rv = w.resource_version
    assert api.end_watches() == 1
    api.add(service("default", "b", "10.0.0.2"))
    event = await stream.__anext__()
    assert event["raw_object"]["metadata"]["name"] == "b"
    await w.close()
    assert [q["resourceVersion"] for q in api.queries("watch")] == [start, seen_rv]


async def test_cut_watches_breaks_the_stream_mid_chunk(api: K8sApi, core: client.CoreV1Api) -> None:
    w = watch.Watch()
    stream = w.stream(
        core.list_service_for_all_namespaces,
        resource_version=str(api.resource_version),
        timeout_seconds=30,
    )
    api.add(service("default", "a", "10.0.0.1"))
    assert (await stream.__anext__())["type"] == "ADDED"
    assert api.cut_watches() == 1
    # Not an ApiException, and Watch does not reconnect by itself: the caller must.
    with pytest.raises(aiohttp.ClientPayloadError):
        await stream.__anext__()
    await api.wait_until(lambda: api.watching() == 0)


async def test_refuse_connections_then_recover_on_the_same_port(
    api: K8sApi, core: client.CoreV1Api
) -> None:
    url = api.url
    await core.list_service_for_all_namespaces()  # leaves a pooled keep-alive connection
    resp = await open_watch(core.list_service_for_all_namespaces, timeout_seconds=30)
    await api.wait_until(lambda: api.watching() == 1)

    api.refuse_connections(True)
    with pytest.raises(aiohttp.ClientPayloadError):  # the open watch is reset
        await resp.content.readline()
    resp.release()
    with pytest.raises(aiohttp.ClientConnectorError):  # and nothing connects
        await core.list_service_for_all_namespaces()

    api.refuse_connections(False)
    assert api.url == url
    assert (await core.list_service_for_all_namespaces()).kind == "ServiceList"


# --- injected failures -------------------------------------------------------------------------


async def test_fail_next_500_then_recovers(api: K8sApi, core: client.CoreV1Api) -> None:
    api.fail_next(500, 2)
    for _ in range(2):
        with pytest.raises(ApiException) as caught:
            await core.list_pod_for_all_namespaces()
        assert caught.value.status == 500
        assert json.loads(caught.value.body or b"")["reason"] == "InternalError"
    assert (await core.list_pod_for_all_namespaces()).kind == "PodList"
    assert api.count("list", "pods") == 3


async def test_fail_next_429_with_retry_after_and_filters(
    api: K8sApi, core: client.CoreV1Api
) -> None:
    api.fail_next(429, verb="watch", kind="pods")
    await core.list_pod_for_all_namespaces()  # not a watch: unaffected
    # A raw watch request does not raise on an error status...
    resp = await call_raw(core.list_pod_for_all_namespaces, watch=True)
    async with resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "1"
    # ...but Watch raises ApiException, because the Status body carries a "code".
    api.fail_next(429, retry_after=3)
    with pytest.raises(ApiException) as caught:
        async for _ in watch.Watch().stream(core.list_pod_for_all_namespaces, timeout_seconds=5):
            pass
    assert caught.value.status == 429


async def test_delay_holds_responses(api: K8sApi, core: client.CoreV1Api) -> None:
    api.delay(0.5)
    started = time.monotonic()
    await core.list_namespace()
    assert time.monotonic() - started >= 0.5
    # kubernetes_asyncio has no request timeout by default; _request_timeout sets one.
    with pytest.raises(asyncio.TimeoutError):
        await core.list_namespace(_request_timeout=0.1)
    api.delay(0)


# --- selectors ---------------------------------------------------------------------------------


async def test_pod_field_selector_on_list_and_watch(api: K8sApi, core: client.CoreV1Api) -> None:
    api.load(
        [
            pod("default", "running", "10.1.0.1"),
            pod("default", "done", "10.1.0.2", phase="Succeeded"),
            pod("default", "failed", "10.1.0.3", phase="Failed"),
            pod("default", "pending", None, phase="Pending"),
        ]
    )
    listed = await raw(core.list_pod_for_all_namespaces, field_selector=FINISHED)
    assert names(listed) == ["pending", "running"]
    # Paginated: the selector applies before the limit; with a selector the remaining count is
    # unknown, so the API leaves remainingItemCount unset.
    first = await raw(core.list_pod_for_all_namespaces, field_selector=FINISHED, limit=1)
    assert names(first) == ["pending"] and "remainingItemCount" not in first["metadata"]
    token = first["metadata"]["continue"]
    last = await raw(
        core.list_pod_for_all_namespaces, field_selector=FINISHED, limit=1, _continue=token
    )
    assert names(last) == ["running"] and "continue" not in last["metadata"]

    resp = await open_watch(
        core.list_pod_for_all_namespaces,
        field_selector=FINISHED,
        resource_version=listed["metadata"]["resourceVersion"],
        timeout_seconds=10,
    )
    async with resp:
        # Leaving the selector is DELETED (with the last matching content); entering is ADDED.
        api.modify(pod("default", "running", "10.1.0.1", phase="Succeeded"))
        event = await next_event(resp)
        assert event["type"] == "DELETED"
        assert event["object"]["status"]["phase"] == "Running"
        assert event["object"]["metadata"]["resourceVersion"] == str(api.resource_version)
        api.modify(pod("default", "done", "10.1.0.2", phase="Running"))
        assert (await next_event(resp))["type"] == "ADDED"
        api.modify(pod("default", "failed", "10.1.0.4", phase="Failed"))  # never matched
        api.modify(pod("default", "pending", "10.1.0.5"))
        event = await next_event(resp)
        assert (event["type"], event["object"]["metadata"]["name"]) == ("MODIFIED", "pending")


async def test_label_selector(api: K8sApi, core: client.CoreV1Api) -> None:
    api.load(
        [
            service("default", "a", "10.0.0.1", labels={"app": "web", "tier": "front"}),
            service("default", "b", "10.0.0.2", labels={"app": "db"}),
            service("default", "c", "10.0.0.3"),
        ]
    )

    async def matching(selector: str) -> list[str]:
        return names(await raw(core.list_service_for_all_namespaces, label_selector=selector))

    assert await matching("app=web") == ["a"]
    assert await matching("app!=web") == ["b", "c"]
    assert await matching("app in (web, db),!tier") == ["b"]
    assert await matching("tier") == ["a"]
    assert len(parse_label_selector("a notin (x,y),b==c")) == 2


# --- observations ------------------------------------------------------------------------------


async def test_requests_are_recorded_with_params_and_token(
    api: K8sApi, core: client.CoreV1Api
) -> None:
    await core.list_pod_for_all_namespaces(limit=10, field_selector=FINISHED)
    start = str(api.resource_version)
    api.add(pod("default", "p", "10.1.0.1"))
    w = watch.Watch()
    async for _ in w.stream(
        core.list_pod_for_all_namespaces,
        resource_version=start,
        allow_watch_bookmarks=True,
        timeout_seconds=10,
    ):
        break
    await w.close()
    records = api.requests(kind="pods")
    assert [r.verb for r in records] == ["list", "watch"]
    assert records[0].params == {"fieldSelector": FINISHED, "limit": "10"}
    # Python booleans go out as "True" (Go's strconv.ParseBool accepts it, so does this server).
    assert records[1].params == {
        "allowWatchBookmarks": "True",
        "resourceVersion": start,
        "timeoutSeconds": "10",
        "watch": "True",
    }
    # The kubeconfig's token user reaches the server as a bearer token.
    assert records[0].authorization == f"Bearer {api.token}"
    assert api.counts()[("watch", "pods")] == 1


def test_hooks_work_from_a_plain_thread_and_validate(api: K8sApi) -> None:
    stored = api.add(service("default", "web", "10.0.0.5", [("http", 80)]))
    assert stored["metadata"]["resourceVersion"] == str(api.resource_version)
    assert stored["metadata"]["uid"]
    with pytest.raises(ValueError):
        api.add(service("default", "web", "10.0.0.5"))
    with pytest.raises(KeyError):
        api.modify(service("default", "ghost", "10.0.0.6"))
    with pytest.raises(KeyError):
        api.delete("pods", "default", "ghost")
    modified = api.modify(service("default", "web", "10.0.0.7"))
    assert modified["metadata"]["uid"] == stored["metadata"]["uid"]  # same object, new version
    assert api.get("Service", "default", "web") == modified
    api.wait_until_sync(lambda: api.count("list") == 0, timeout=1)
    with pytest.raises(TimeoutError):
        api.wait_until_sync(lambda: api.watching() == 1, timeout=0.1)
