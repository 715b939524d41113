"""The embedded broker (REDIS_URL unset) never hands a worker half a message."""

import pytest
from kombu import Connection

from newsletter.broker import Transport


@pytest.fixture
def queue_folder(tmp_path):
    (tmp_path / "queue").mkdir()
    return tmp_path / "queue"


def connect(folder) -> Connection:
    return Connection(
        "filesystem://",
        transport=Transport,
        # Declaring a queue writes its exchange into the control folder, which
        # kombu puts in the working directory (the repository) unless told.
        transport_options={
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(folder.with_name("control")),
        },
    )


def test_a_message_is_consumed_whole_and_leaves_no_files(queue_folder):
    with connect(queue_folder) as connection:
        queue = connection.SimpleQueue("tasks")
        queue.put({"batch_id": 7})
        assert [p.suffix for p in queue_folder.iterdir()] == [".msg"]
        message = queue.get(timeout=1)
        assert message.payload == {"batch_id": 7}
        message.ack()
        queue.close()
    assert list(queue_folder.iterdir()) == []


def test_a_message_still_being_written_is_not_taken(queue_folder):
    with connect(queue_folder) as connection:
        queue = connection.SimpleQueue("tasks")
        # What a producer leaves while it writes: invisible to consumers.
        (queue_folder / "1_abc.tasks.msg.partial").write_bytes(b"")
        with pytest.raises(queue.Empty):
            queue.get(timeout=0.2)
        assert (queue_folder / "1_abc.tasks.msg.partial").exists()
        queue.close()


def test_the_embedded_broker_is_the_safe_transport(settings, caplog):
    from newsletter.celery import app

    if settings.REDIS_URL:
        assert app.conf.broker_url == settings.REDIS_URL
    else:
        connection = app.connection_for_write()
        assert connection.transport_cls == "newsletter.broker:Transport"
        # Connecting says nothing a newcomer running `make run` should worry about.
        with caplog.at_level("WARNING", logger="kombu"):
            connection.info()
        assert caplog.records == []
