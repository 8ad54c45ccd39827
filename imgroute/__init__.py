"""imgroute: route GPT Image 2 jobs to the cheapest provider that can really deliver them."""

__version__ = "0.1.0"
