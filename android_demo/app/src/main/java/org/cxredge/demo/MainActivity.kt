package org.cxredge.demo

import android.graphics.Bitmap
import android.net.Uri
import android.os.Bundle
import android.view.View
import android.widget.Button
import android.widget.CheckBox
import android.widget.ImageView
import android.widget.ProgressBar
import android.widget.TextView
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AlertDialog
import androidx.appcompat.app.AppCompatActivity
import androidx.core.content.FileProvider
import java.io.File
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import org.cxredge.core.CxrEdgeException
import org.cxredge.core.FloatImage
import org.cxredge.core.HeatMapOverlay
import org.cxredge.core.Prediction

/**
 * The demo screen: pick an X-ray (gallery, camera or a shipped sample), classify it with the bundle in
 * the assets, show the label, the probabilities and the heat map. Decoding, inference and drawing run on
 * one worker thread; this class only wires buttons and moves results to the views.
 */
class MainActivity : AppCompatActivity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()

    @Volatile
    private var classifier: BundleClassifier? = null
    private var shown: Pair<FloatImage, Prediction>? = null
    private var captureUri: Uri? = null

    private lateinit var status: TextView
    private lateinit var result: TextView
    private lateinit var image: ImageView
    private lateinit var progress: ProgressBar
    private lateinit var heatMap: CheckBox
    private lateinit var buttons: List<Button>

    private val pickImage = registerForActivityResult(ActivityResultContracts.GetContent()) { uri ->
        if (uri != null) classify("gallery image") { BitmapImages.read(contentResolver, uri, upright = false) }
    }

    private val takePicture = registerForActivityResult(ActivityResultContracts.TakePicture()) { saved ->
        val uri = captureUri
        if (saved && uri != null) classify("camera photo") { BitmapImages.read(contentResolver, uri, upright = true) }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        status = findViewById(R.id.status)
        result = findViewById(R.id.result)
        image = findViewById(R.id.image)
        progress = findViewById(R.id.progress)
        heatMap = findViewById(R.id.heatMap)
        val gallery = findViewById<Button>(R.id.gallery)
        val camera = findViewById<Button>(R.id.camera)
        val samples = findViewById<Button>(R.id.samples)
        buttons = listOf(gallery, camera, samples)

        gallery.setOnClickListener { pickImage.launch("image/*") }
        camera.setOnClickListener { capture() }
        samples.setOnClickListener { chooseSample() }
        heatMap.setOnCheckedChangeListener { _, checked -> shown?.let { (img, p) -> render(img, p, checked) } }

        busy(true)
        worker.execute {
            try {
                val c = BundleClassifier(assets)
                classifier = c
                val m = c.bundle.manifest
                val text = "${m.name()}: ${m.labels().joinToString()} (members ${c.members.joinToString()}); " +
                    c.bundle.signatureStatus
                runOnUiThread {
                    status.text = text
                    busy(false)
                }
            } catch (e: RuntimeException) { // CxrEdgeException, or LiteRT refusing a model
                runOnUiThread {
                    status.text = "Cannot load the bundle: ${e.message}"
                    busy(false)
                }
            }
        }
    }

    override fun onDestroy() {
        worker.execute { classifier?.close() }
        worker.shutdown()
        super.onDestroy()
    }

    private fun capture() {
        val folder = File(cacheDir, "captures").apply { mkdirs() }
        val uri = FileProvider.getUriForFile(this, "$packageName.captures", File(folder, "capture.jpg"))
        captureUri = uri
        takePicture.launch(uri)
    }

    private fun chooseSample() {
        val names = assets.list("samples")?.filter { it.endsWith(".png") }?.sorted().orEmpty()
        if (names.isEmpty()) {
            status.text = "No samples in the assets (see android_demo/README.md)."
            return
        }
        AlertDialog.Builder(this)
            .setTitle(R.string.pick_sample)
            .setItems(names.toTypedArray()) { _, which ->
                val name = names[which]
                classify(name) { BitmapImages.decode(assets.open("samples/$name").use { it.readBytes() }, false) }
            }
            .show()
    }

    /** Decodes and classifies on the worker thread, then shows the result. */
    private fun classify(what: String, decode: () -> FloatImage) {
        val c = classifier ?: return
        val withHeatMap = heatMap.isChecked
        busy(true)
        status.text = getString(R.string.classifying)
        worker.execute {
            try {
                val img = decode()
                val p = c.classify(img)
                val text = PredictionText.format(p, c.members, c.method)
                val bitmap = overlay(img, p, withHeatMap)
                runOnUiThread {
                    status.text = "$what (${img.width()}x${img.height()})"
                    result.text = text
                    shown = Pair(img, p)
                    image.setImageBitmap(bitmap)
                    busy(false)
                }
            } catch (e: CxrEdgeException) {
                fail(what, e.message ?: e.toString())
            } catch (e: RuntimeException) { // a decoder or LiteRT failure: report it, keep the app alive
                fail(what, e.toString())
            } catch (e: OutOfMemoryError) {
                fail(what, "image too large for this device")
            }
        }
    }

    /** Redraws the shown image with or without the heat map (worker thread). */
    private fun render(img: FloatImage, p: Prediction, withHeatMap: Boolean) {
        worker.execute {
            val bitmap = overlay(img, p, withHeatMap)
            runOnUiThread { image.setImageBitmap(bitmap) }
        }
    }

    private fun fail(what: String, message: String) {
        runOnUiThread {
            status.text = "$what: $message"
            busy(false)
        }
    }

    private fun busy(on: Boolean) {
        progress.visibility = if (on) View.VISIBLE else View.GONE
        buttons.forEach { it.isEnabled = !on && classifier != null }
    }

    private companion object {
        /** The radiograph with the heat map of the predicted label on top (when it exists and is wanted). */
        fun overlay(img: FloatImage, p: Prediction, withHeatMap: Boolean): Bitmap {
            val heat = if (withHeatMap) p.heatMap(img.width(), img.height()) else null
            val argb = HeatMapOverlay.argb(img, heat, HeatMapOverlay.DEFAULT_ALPHA)
            return BitmapImages.toBitmap(argb, img.width(), img.height())
        }
    }
}
