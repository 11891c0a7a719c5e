package org.cxredge.demo

import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.util.Base64
import org.cxredge.core.Json
import org.cxredge.core.JsonObject
import org.cxredge.core.ModelEntry
import org.cxredge.core.Quantization
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith

/**
 * On a device or emulator: the app's decoder, the core and the real LiteRT runner against the committed
 * golden vectors (tests/golden, packaged as androidTest assets), with the tolerances of
 * tests/golden/index.json. What the JVM tests cannot check: BitmapFactory's PNG decoding and LiteRT's
 * outputs on this CPU.
 */
@RunWith(AndroidJUnit4::class)
class GoldenParityTest {
    private val instrumentation = InstrumentationRegistry.getInstrumentation()
    private val testAssets = instrumentation.context.assets
    private val appAssets = instrumentation.targetContext.assets

    private fun golden(name: String): JsonObject =
        JsonObject.of(Json.parse(testAssets.open("golden/$name").use { it.readBytes().toString(Charsets.UTF_8) }), name)

    private fun bytes(o: JsonObject, key: String): ByteArray = Base64.getDecoder().decode(o.`object`(key).string("base64"))

    private fun floats(o: JsonObject, key: String): FloatArray {
        val b = ByteBuffer.wrap(bytes(o, key)).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
        return FloatArray(b.remaining()).also { b.get(it) }
    }

    @Test
    fun goldenSamplesGiveTheGoldenResults() {
        val index = golden("index.json")
        val tol = index.`object`("tolerances")
        BundleClassifier(appAssets).use { classifier ->
            val manifest = classifier.bundle.manifest
            assertEquals(
                index.`object`("bundle_models").asMap(),
                manifest.models().associate { it.name() to it.sha256() },
            )
            for (name in index.stringList("files")) {
                val g = golden(name)
                val file = g.string("file")
                val image = BitmapImages.decode(appAssets.open("samples/$file").use { it.readBytes() }, false)
                val p = classifier.classify(image)

                assertArrayEquals("$name: 8-bit image", bytes(g, "preprocessed_u8"), p.preprocessed().u8().pixels())
                val x = p.preprocessed().input()
                val mean = x.average()
                val std = kotlin.math.sqrt(x.fold(0.0) { s, v -> s + (v - mean) * (v - mean) } / x.size)
                assertEquals(g.`object`("model_input").number("mean"), mean, tol.number("model_input"))
                assertEquals(g.`object`("model_input").number("std"), std, tol.number("model_input"))

                for (member in classifier.members) {
                    val entry: ModelEntry = manifest.model(member)
                    val limit = if (entry.outputs().getValue("probs").isQuantized) {
                        tol.number("probs_quantized_models")
                    } else {
                        tol.number("probs_float_models")
                    }
                    val expected = g.`object`("models").`object`(member).numberArray("probs")
                    val raw = expected.map { it.toFloat() }.toFloatArray()
                    val renormalised = Quantization.renormalize(raw, entry.outputs().getValue("probs"))
                    val actual = p.perModel().getValue(member)
                    for (k in actual.indices) {
                        assertEquals("$name $member class $k", renormalised[k].toDouble(), actual[k].toDouble(), limit)
                    }
                }
                assertEquals(name, g.`object`("ensemble").string("label"), p.label())
                val cam = floats(g, "cam")
                val actualCam = p.cam()!!.pixels()
                for (i in cam.indices) {
                    assertEquals("$name cam[$i]", cam[i].toDouble(), actualCam[i].toDouble(), tol.number("cam"))
                }
                assertTrue(p.timingsMs().containsKey("preprocess"))
            }
        }
    }
}
