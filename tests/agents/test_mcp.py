"""`imgroute mcp` driven by the MCP SDK's own client over stdio, against the provider fakes: the
tools and their typed inputs, an image back with its path and cost, limits the agent cannot raise,
and every refusal or bad argument answered as a tool error the agent can read."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

mcp = pytest.importorskip("mcp", reason="the MCP SDK is the extra imgroute[mcp]")


async def session_run(tmp_path, steps, *flags: str):
    """Start `imgroute mcp` with `flags`, run `steps(session)` against it, return what it returns."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "imgroute", "mcp", "--out", str(tmp_path / "out"), *flags],
        env=dict(os.environ),
    )
    with open(tmp_path / "server.log", "w") as errlog:
        async with stdio_client(server, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await steps(session)


def summary(result) -> dict:
    return json.loads(next(block.text for block in result.content if block.type == "text"))


def test_the_tools_quote_generate_edit_and_spend_within_the_limits_set(fakes, tmp_path):
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.new("RGB", (1024, 1024), (20, 40, 60)).save(photo)
    kie_only = {"provider": ["kie"]}

    async def steps(session):
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == {"quote", "generate", "edit", "spend"}
        assert tools["generate"].input_schema["properties"]["quality"]["enum"] == ["low", "medium", "high"]
        quoted = await session.call_tool("quote", {"prompt": "a fox", **kie_only})
        assert not quoted.is_error and quoted.structured_content["choice"]["offer"].startswith("kie/")
        made = await session.call_tool("generate", {"prompt": "a fox", **kie_only})
        assert not made.is_error, made.content
        image = next(block for block in made.content if block.type == "image")
        assert image.mime_type == "image/png" and len(image.data) > 100
        said = summary(made)
        assert said["actual_cost_usd"] == 0.03 and said["max_cost_usd"] == 0.05 and os.path.isfile(said["files"][0])
        edited = await session.call_tool("edit", {"prompt": "at dusk", "images": [str(photo)], **kie_only})
        assert not edited.is_error, edited.content
        refused = await session.call_tool("generate", {"prompt": "a third fox", **kie_only})
        assert refused.is_error and "$0.02 left of the session's $0.08" in refused.content[0].text
        spent = await session.call_tool("spend", {})
        assert spent.structured_content["session"]["spent_usd"] == 0.06
        return True

    assert asyncio.run(session_run(tmp_path, steps, "--max-cost", "0.05", "--session-budget", "0.08"))
    assert fakes["kie"].charges == 2  # the refused call sent nothing


def test_an_agent_cannot_raise_the_ceiling_and_bad_arguments_are_tool_errors(fakes, tmp_path):
    async def steps(session):
        # OpenAI at high quality costs more than the server's $0.05 a call: an agent's max_cost of
        # $5 does not raise it.
        over = await session.call_tool(
            "generate", {"prompt": "a fox", "quality": "high", "provider": ["openai"], "max_cost": 5}
        )
        assert over.is_error and "max-cost" in over.content[0].text.lower().replace("_", "-")
        bad = await session.call_tool("generate", {"prompt": "a fox", "quality": "ultra"})
        assert bad.is_error
        unknown = await session.call_tool("quote", {"prompt": "a fox", "provider": ["nobody"]})
        assert unknown.is_error and "nobody" in unknown.content[0].text
        return True

    assert asyncio.run(session_run(tmp_path, steps, "--max-cost", "0.05"))
    assert fakes["openai"].requests == []


def test_mcp_without_a_limit_is_refused(cli):
    r = cli("mcp")
    assert r.code == 2 and "needs a limit an agent cannot raise" in r.err


def test_the_limits_may_come_from_config_yaml(fakes, tmp_path, isolated_home):
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.yaml").write_text("mcp: {max_cost: 0.02, out: ~/images}\n")

    async def steps(session):
        over = await session.call_tool("generate", {"prompt": "a fox", "provider": ["kie"]})  # $0.03 > $0.02
        spent = await session.call_tool("spend", {})
        return over, spent

    over, spent = asyncio.run(session_run(tmp_path, steps))  # no limit given: config.yaml's
    assert over.is_error and "$0.02" in over.content[0].text
    assert spent.structured_content["session"]["max_cost_per_call_usd"] == 0.02
    assert fakes["kie"].charges == 0


def test_a_job_that_moved_on_from_a_possibly_charged_failure_counts_both_against_the_session(fakes, tmp_path):
    """Kie failed the task without saying whether it charged, and Replicate delivered: the session
    counts both, as `spend` and the caps do, until `jobs settle` says otherwise."""
    fakes["kie"].outcome = "fail"

    async def steps(session):
        made = await session.call_tool("generate", {"prompt": "a fox", "provider": ["kie", "replicate"]})
        assert not made.is_error, made.content
        assert summary(made)["actual_cost_usd"] == 0.047
        spent = await session.call_tool("spend", {})
        return spent.structured_content["session"]["spent_usd"]

    assert asyncio.run(session_run(tmp_path, steps, "--max-cost", "0.10", "--session-budget", "1")) == 0.077
    assert fakes["kie"].charges == 1 and fakes["replicate"].charges == 1
