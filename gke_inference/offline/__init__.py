"""The offline toolchain: run a program under the mock runtime, render, validate, check policy."""
