"""Old path of the Magento hook, which now lives in its store's package:
this module *is* ``zoho_store_sync.sources.magento.hook``.

It puts that module in its own place in ``sys.modules``, so every name imported from here and every name a test
monkeypatches here is the one the code uses (see ``zoho_store_sync.sources._old_paths``).
"""

import sys

from zoho_store_sync.sources.magento import hook as _moved

sys.modules[__name__] = _moved
