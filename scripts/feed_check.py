"""Builds a podcast feed from an Easel image's `/podcast` document with
feedgen, and reports what the feed library kept. Run by feed-check.sh.

Output (JSON on stdout):
  channel_image     the <itunes:image href> feedgen wrote for the channel
  episode_image     the same for an episode (feedgen raises on a bad URL)
  alias_kept        whether feedgen kept the extensionless alias
                    (/styles/feed) as a channel image: it does not
  podcast_images    the <podcast:image> elements of the document's `xml`,
                    parsed with lxml, as attribute maps
  rss               the feed feedgen wrote
"""

import json
import sys
import urllib.request

from feedgen.feed import FeedGenerator
from lxml import etree


def fetch_json(url, key):
    request = urllib.request.Request(url)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def feed_with(image_href):
    generator = FeedGenerator()
    generator.load_extension("podcast")
    generator.title("Easel feed check")
    generator.link(href="https://example.com/show", rel="alternate")
    generator.description("A feed written by feedgen from Easel's podcast tags.")
    generator.podcast.itunes_image(image_href)
    return generator


def main():
    url = sys.argv[1]
    key = sys.argv[2] if len(sys.argv) > 2 else None
    document = fetch_json(url, key)
    href = document["itunes_image"]["href"]

    generator = feed_with(href)
    episode = generator.add_entry()
    episode.id("https://example.com/show/1")
    episode.title("Episode 1")
    episode.podcast.itunes_image(href)
    rss = generator.rss_str(pretty=True)
    root = etree.fromstring(rss)
    ns = {"itunes": document["namespaces"]["itunes"]}
    channel = root.find("channel/itunes:image", ns)
    item = root.find("channel/item/itunes:image", ns)

    alias = feed_with(document["links"]["feed"].removesuffix(".jpg")).rss_str()
    alias_kept = etree.fromstring(alias).find("channel/itunes:image", ns) is not None

    wrapped = (
        '<rss version="2.0" xmlns:itunes="{itunes}" xmlns:podcast="{podcast}">'
        "<channel>{xml}</channel></rss>"
    ).format(xml=document["xml"], **document["namespaces"])
    parsed = etree.fromstring(wrapped.encode("utf-8"))
    podcast_ns = {"podcast": document["namespaces"]["podcast"], **ns}
    podcast_images = [
        dict(element.attrib) for element in parsed.findall("channel/podcast:image", podcast_ns)
    ]
    snippet_itunes = parsed.find("channel/itunes:image", podcast_ns)

    print(
        json.dumps(
            {
                "channel_image": None if channel is None else channel.get("href"),
                "episode_image": None if item is None else item.get("href"),
                "snippet_itunes_image": None
                if snippet_itunes is None
                else snippet_itunes.get("href"),
                "alias_kept": alias_kept,
                "podcast_images": podcast_images,
                "rss": rss.decode("utf-8"),
            }
        )
    )


if __name__ == "__main__":
    main()
