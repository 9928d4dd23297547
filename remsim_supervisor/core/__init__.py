"""The pure parts: bytes, facts and clocks in; decisions out. No I/O."""
