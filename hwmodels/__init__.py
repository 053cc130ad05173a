"""hwmodels: what learning costs in hardware (locality, operations, wires, bits, energy).

Reads an lpfa network and its channel; lpfa never imports hwmodels.
"""
