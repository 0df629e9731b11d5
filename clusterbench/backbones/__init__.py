"""Feature extractors: a module mapping uint8 images N×C×H×W to features N×D."""
