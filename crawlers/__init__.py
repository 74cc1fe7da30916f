"""The Scrapy project of Kiln: `python -m crawlers.run` crawls, `python -m crawlers.demo_site`
serves the local demo shop."""
