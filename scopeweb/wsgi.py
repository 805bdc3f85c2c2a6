import logging
import os
import threading

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scopeweb.settings")
application = get_wsgi_application()


def _warm_tokenizer() -> None:
    """Load the model's tokenizer (about 1.5 s for 262,144 pieces) in the background as the
    web process starts, so that the first trace view a reviewer opens does not wait for it."""
    from traces.engine.tokenizer import load_tokenizer

    try:
        load_tokenizer()
    except Exception as exc:  # no model files yet: the first page that needs them says so
        logging.getLogger(__name__).info("tokenizer not warmed: %s", exc)


threading.Thread(target=_warm_tokenizer, name="warm-tokenizer", daemon=True).start()
