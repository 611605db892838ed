"""What ``dwh status`` and ``dwh marts`` show, as text."""

from __future__ import annotations

from dwh_adapters.kafka import consumer_group_lag, group_members, topic_message_count
from dwh_adapters.postgres.marts import PostgresMarts
from dwh_adapters.postgres.settings import PgSettings
from dwh_workers.config import LAYERS, Services


def status_report(services: Services) -> str:
    """Per layer: members of its consumer group, lag, messages in its topic and its
    dead-letter topic; then rows per warehouse table."""
    lines = [f"{'layer':<5} {'workers':>7} {'lag':>9} {'in topic':>10} {'dead letters':>13}  group"]
    for layer in LAYERS.values():
        kafka = services.kafka
        lag = sum(consumer_group_lag(kafka, layer.consumer_group, layer.source_topic).values())
        lines.append(
            f"{layer.name:<5} {group_members(kafka, layer.consumer_group):>7} {lag:>9,} "
            f"{topic_message_count(kafka, layer.source_topic):>10,} "
            f"{topic_message_count(kafka, layer.source_topic + '-dlq'):>13,}  "
            f"{layer.consumer_group}"
        )
    with PostgresMarts(services.postgres) as marts:
        counts = marts.row_counts()
    lines.append("")
    lines.append(f"{'table':<34} {'rows':>10}")
    lines.extend(f"{table:<34} {rows:>10,}" for table, rows in counts.items())
    return "\n".join(lines)


def marts_report(postgres: PgSettings, user: str | None, category: str | None, top: int) -> str:
    """One user's products and categories, or the top users of a category, or both
    overall tops when neither is given. Names, not hash keys."""
    with PostgresMarts(postgres) as marts:
        if user:
            products = marts.user_products(user)
            categories = marts.user_categories(user)
            if not products and not categories:
                return f"no counted orders for user {user}"
            return "\n".join(
                [f"user {user}", "  products:"]
                + [f"    {count:>5}  {name}" for name, count in products[:top]]
                + ["  categories:"]
                + [f"    {count:>5}  {name}" for name, count in categories[:top]]
            )
        if category:
            rows = marts.top_users(category, top)
            if not rows:
                return f"no counted orders in category {category!r}"
            return "\n".join(
                [f"top users of {category}:"]
                + [f"  {count:>5}  {name} ({login})" for name, login, count in rows]
            )
        pairs = marts.top_categories(top)
        return "\n".join(
            ["top (user, category) pairs:"]
            + [
                f"  {count:>5}  {name} ({login}): {category_name}"
                for name, login, category_name, count in pairs
            ]
        )
