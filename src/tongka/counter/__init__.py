"""The store counter: sales made by staff (cash, card terminal, QR), tills and their shifts, and
the agents' and stores' commission."""
