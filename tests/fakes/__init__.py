"""Faithful fakes of each provider's documented HTTP API, served on 127.0.0.1."""

from tests.fakes.apiframe import FakeApiframe
from tests.fakes.azure import FakeAzure
from tests.fakes.fal import FakeFal
from tests.fakes.kie import FakeKie
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openrouter import FakeOpenRouter
from tests.fakes.piapi import FakePiAPI
from tests.fakes.replicate import FakeReplicate

FAKES = {
    "openai": FakeOpenAI,
    "fal": FakeFal,
    "piapi": FakePiAPI,
    "kie": FakeKie,
    "apiframe": FakeApiframe,
    "replicate": FakeReplicate,
    "azure": FakeAzure,
    "openrouter": FakeOpenRouter,
}

__all__ = [
    "FAKES",
    "FakeApiframe",
    "FakeAzure",
    "FakeFal",
    "FakeKie",
    "FakeOpenAI",
    "FakeOpenRouter",
    "FakePiAPI",
    "FakeReplicate",
]
