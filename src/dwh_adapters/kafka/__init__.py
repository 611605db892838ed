"""The Kafka side of the warehouse on confluent-kafka: the batch consumer of a layer's
source topic, the publisher of its output, the dead-letter sink, the operators' dead
letter tools (list, redrive) and topic administration."""

from dwh_adapters.kafka._clients import committed
from dwh_adapters.kafka.admin import (
    consumer_group_lag,
    delete_topics,
    ensure_topics,
    group_members,
    reset_group_to_earliest,
    topic_message_count,
    wait_for_broker,
)
from dwh_adapters.kafka.consumer import KafkaBatchConsumer
from dwh_adapters.kafka.dead_letters import (
    REDRIVE_GROUP,
    RedriveResult,
    StoredDeadLetter,
    read_dead_letters,
    redrive,
)
from dwh_adapters.kafka.producer import (
    DeliveryFailed,
    KafkaDeadLetterSink,
    KafkaPublisher,
    MessageRejected,
)
from dwh_adapters.kafka.settings import KafkaSettings

__all__ = [
    "REDRIVE_GROUP",
    "DeliveryFailed",
    "KafkaBatchConsumer",
    "KafkaDeadLetterSink",
    "KafkaPublisher",
    "KafkaSettings",
    "MessageRejected",
    "RedriveResult",
    "StoredDeadLetter",
    "committed",
    "consumer_group_lag",
    "delete_topics",
    "ensure_topics",
    "group_members",
    "read_dead_letters",
    "redrive",
    "reset_group_to_earliest",
    "topic_message_count",
    "wait_for_broker",
]
