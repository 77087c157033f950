"""The governed ReAct loop, framework-free: see loop.py (the loop), ports.py (what it runs
over), steps.py (what a valid model step is) and memory.py (in-memory ports for tests)."""
