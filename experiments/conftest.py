"""pytest (from the repo root or from here): the experiments' tests import the top-level modules (train, fid,
models, interpolants, sample) and this folder's; the `one_thread` fixture comes from the top-level conftest.py."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]
