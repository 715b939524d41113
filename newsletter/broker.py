"""The embedded broker: kombu's filesystem transport, with messages written safely.

The stock transport creates a message file and then writes into it, while a
consumer in another process may already have moved that file away and read it
empty: the worker fails to decode it and the task is lost. Here a message is
written under a name no consumer looks at, then renamed into the queue, which is
atomic on one file system. (Only for REDIS_URL unset: a single machine, small lists.)
"""

import os
import uuid
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # Consumers take only names ending ".<queue>.msg".
        partial = f"{final}.partial"
        with open(partial, "wb") as message:
            message.write(str_to_bytes(dumps(payload)))
        os.replace(partial, final)


class Transport(filesystem.Transport):
    Channel = Channel
