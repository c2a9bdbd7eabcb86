"""Language models (note D): BERT (``bert.py``) and its tokenisation (``tokenizer.py``)."""
