import gc
import logging
import os
import threading

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scopeweb.settings")
application = get_wsgi_application()


def _warm_up() -> None:
    """Run once in the background as a web process starts.

    - Load the model's tokenizer (about 1.5 s for 262,144 pieces), so that the first trace view
      a reviewer opens does not wait for it.
    - Then ``gc.freeze()`` what the process holds by now (Django, the imported modules, URL and
      template caches): Python's full garbage-collection passes stop walking those ~180,000
      long-lived objects. Each pass cost about 130 ms and hit 2 % of trace views (single
      process, 300 views: p99 189 ms, 69 ms frozen). Garbage made by requests is collected as
      before.
    """
    from traces.engine.tokenizer import load_tokenizer

    try:
        load_tokenizer()
    except Exception as exc:  # no model files yet: the first page that needs them says so
        logging.getLogger(__name__).info("tokenizer not warmed: %s", exc)
    get_resolver().url_patterns  # noqa: B018  # imports every page's module before the freeze

    gc.collect()
    gc.freeze()


threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()
