"""The DecoNetwork store: ``hook.py`` (the Order Management API), ``export.py`` (the customer export, read and
checked), ``merge.py`` (orders and export rows merged into the canonical frame), ``extraction.py`` (the passes, full
or incremental), mapped by include/mappings/deconetwork.yaml.

Imported when the DAG files are parsed (the registry reads ``SOURCE``): it imports nothing heavy. It also answers
for the old module ``zoho_store_sync.sources.deconetwork`` (the extraction): ``from
zoho_store_sync.sources.deconetwork import extract`` still works, imported on first use (see
``sources._old_paths``).
"""

from zoho_store_sync.sources._old_paths import answer_for
from zoho_store_sync.sources.registry import Source

SOURCE = Source(
    name="deconetwork",
    extractor="zoho_store_sync.sources.deconetwork.extraction:extract_tenant",
    default_mapping="deconetwork.yaml",
    conn_type="deconetwork",
    hook="zoho_store_sync.sources.deconetwork.hook:DecoNetworkHook",
    options_field="deconetwork",
    options_model="zoho_store_sync.config:DecoNetworkOptions",
)

answer_for(__name__, "zoho_store_sync.sources.deconetwork.extraction")
