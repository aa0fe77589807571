"""The Magento 2 store: ``hook.py`` (REST calls, keyset paging; ``oauth1.py`` signs them), ``rows.py`` (customers
and their orders as canonical rows), ``extraction.py`` (the passes, full or incremental), mapped by
include/mappings/magento.yaml.

Imported when the DAG files are parsed (the registry reads ``SOURCE``): it imports nothing heavy. It also answers
for the old module ``zoho_store_sync.sources.magento`` (the extraction): ``from zoho_store_sync.sources.magento
import extract`` still works, imported on first use (see ``sources._old_paths``).
"""

from zoho_store_sync.sources._old_paths import answer_for
from zoho_store_sync.sources.registry import Source

SOURCE = Source(
    name="magento",
    extractor="zoho_store_sync.sources.magento.extraction:extract_tenant",
    default_mapping="magento.yaml",
    conn_type="magento",
    hook="zoho_store_sync.sources.magento.hook:MagentoHook",
    options_field="magento",
    options_model="zoho_store_sync.config:MagentoOptions",
)

answer_for(__name__, "zoho_store_sync.sources.magento.extraction")
