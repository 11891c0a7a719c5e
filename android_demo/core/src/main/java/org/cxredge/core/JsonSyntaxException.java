package org.cxredge.core;

/** The text handed to {@link Json#parse(String)} is not valid JSON. */
public final class JsonSyntaxException extends CxrEdgeException {
    private static final long serialVersionUID = 1L;

    private final int position;

    /**
     * @param problem what is wrong
     * @param position character offset of the problem in the text
     * @param expected what the parser needed there
     * @param received what it found
     */
    public JsonSyntaxException(String problem, int position, String expected, String received) {
        super(problem, "character " + position, expected, received);
        this.position = position;
    }

    /** Character offset of the problem. */
    public int position() {
        return position;
    }
}
