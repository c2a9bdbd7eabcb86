"""Language models (note D): BERT (``bert.py``) and its tokenisation (``tokenizer.py``);
Word2Vec (``word2vec.py``) and its vectors (``keyed_vectors.py``)."""

from paperlab.language.keyed_vectors import KeyedVectors
from paperlab.language.word2vec import Word2Vec

__all__ = ["KeyedVectors", "Word2Vec"]
