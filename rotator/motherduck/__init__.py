"""The MotherDuck REST client and the parsing of its answers."""
